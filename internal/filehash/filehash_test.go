package filehash

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestFile: the digest is the file's SHA-256; a rewritten file (new size
// or modification time) is hashed again, not served from the memo.
func TestFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "a.bin")
	for i, content := range []string{"first", "second, longer", "third, longer!"} {
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		// a distinct modification time even on coarse clocks
		mt := time.Unix(1700000000+int64(i), 0)
		if err := os.Chtimes(p, mt, mt); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte(content))
		want := hex.EncodeToString(sum[:])
		for range 2 {
			got, err := File(p)
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Fatalf("content %q: digest %s, want %s", content, got, want)
			}
		}
	}
	if _, err := File(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("a missing file hashed")
	}
}

// TestStartThenFile: a large file (read through a memory map) hashed in
// the background by Start gives File the same digest as crypto/sha256 over
// its bytes, and concurrent callers share one computation.
func TestStartThenFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "big.bin")
	b := make([]byte, 9<<20+123)
	for i := range b {
		b[i] = byte(i * 7)
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	want := hex.EncodeToString(sum[:])
	Start(p, filepath.Join(t.TempDir(), "missing"))
	done := make(chan string, 4)
	for range 4 {
		go func() {
			d, err := File(p)
			if err != nil {
				d = err.Error()
			}
			done <- d
		}()
	}
	for range 4 {
		if got := <-done; got != want {
			t.Fatalf("digest %s, want %s", got, want)
		}
	}
}
