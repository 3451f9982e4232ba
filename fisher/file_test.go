//go:build unix

package fisher

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/onnxpost/onnxpost/onnxio"
)

// TestReadRefusesSpecialFiles: a Fisher file that is a FIFO (nobody writes
// it) or a link to /dev/zero is refused before it is read.
func TestReadRefusesSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "f.onnx")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skip("no FIFOs here:", err)
	}
	zero := filepath.Join(dir, "z.onnx")
	if err := os.Symlink("/dev/zero", zero); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{fifo, zero} {
		if _, _, err := Read(p); !errors.Is(err, onnxio.ErrNotRegular) {
			t.Errorf("%s: got %v, want onnxio.ErrNotRegular", p, err)
		}
	}
}
