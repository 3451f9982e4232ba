// Package filehash is onnxpost's one SHA-256 of input files, for the
// provenance that merge and release record. A file is read once per
// process: a second request for the same path, size and modification time
// returns the digest computed before (the merge command records its inputs
// both in its own metadata and in the command's provenance, and multi-GB
// inputs would otherwise be read twice).
package filehash

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"path/filepath"
	"sync"

	"github.com/onnxpost/onnxpost/internal/safefile"
)

// key identifies one version of a file: a file rewritten since it was
// hashed (another size or modification time) is hashed again.
type key struct {
	path  string
	size  int64
	mtime int64
}

var memo sync.Map // key → hex digest

// File returns the hex SHA-256 of the regular file at path (opened with
// safefile.Open: FIFOs and devices are refused without blocking).
func File(path string) (string, error) {
	f, _, err := safefile.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	k := key{abs, st.Size(), st.ModTime().UnixNano()}
	if d, ok := memo.Load(k); ok {
		return d.(string), nil
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	d := hex.EncodeToString(h.Sum(nil))
	memo.Store(k, d)
	return d, nil
}
