//go:build unix

package safefile

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestOpenRefusesSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	reg := filepath.Join(dir, "reg")
	if err := os.WriteFile(reg, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skip("no FIFOs here:", err)
	}
	zero := filepath.Join(dir, "zero")
	if err := os.Symlink("/dev/zero", zero); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink("reg", link); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path string
		want error
	}{
		{reg, nil}, {link, nil},
		{dir, ErrNotRegular}, {fifo, ErrNotRegular}, {zero, ErrNotRegular}, {"/dev/null", ErrNotRegular},
		{filepath.Join(dir, "missing"), os.ErrNotExist},
	} {
		f, size, err := Open(c.path)
		if !errors.Is(err, c.want) {
			t.Errorf("Open(%s): got %v, want %v", c.path, err, c.want)
		}
		if err == nil {
			if size != 5 {
				t.Errorf("Open(%s): size %d", c.path, size)
			}
			f.Close()
		}
		if _, err := ReadFile(c.path, 0); !errors.Is(err, c.want) {
			t.Errorf("ReadFile(%s): got %v, want %v", c.path, err, c.want)
		}
	}
	if b, err := ReadFile(reg, 5); err != nil || string(b) != "hello" {
		t.Errorf("ReadFile at the limit: %q, %v", b, err)
	}
	if _, err := ReadFile(reg, 4); !errors.Is(err, ErrTooLarge) {
		t.Errorf("ReadFile over the limit: got %v, want ErrTooLarge", err)
	}
}
