// Package filehash is onnxpost's one SHA-256 of input files, for the
// provenance that merge and release record. A file is read once per
// process: a second request for the same path, size and modification time
// returns the digest computed before (the merge command records its inputs
// both in its own metadata and in the command's provenance, and multi-GB
// inputs would otherwise be read twice), and Start lets a caller begin
// hashing early, in the background, and collect the digest later with File
// (the merge command hashes its inputs while it merges them).
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

// result is one digest, being computed until done is closed.
type result struct {
	done   chan struct{}
	digest string
	err    error
}

var (
	mu   sync.Mutex
	memo = map[key]*result{}
)

// File returns the hex SHA-256 of the regular file at path (opened with
// safefile.Open: FIFOs and devices are refused without blocking). When the
// same version of the file is being hashed already (Start), File waits for
// that digest instead of reading the file again.
func File(path string) (string, error) {
	r, err := lookup(path)
	if err != nil {
		return "", err
	}
	<-r.done
	return r.digest, r.err
}

// Start begins hashing each path in the background (a goroutine per file
// not hashed yet) and returns at once; File collects the digests. Errors
// (a missing file) are left for File to report.
func Start(paths ...string) {
	for _, p := range paths {
		_, _ = lookup(p)
	}
}

// lookup returns the memoized result for path's current version, starting
// its computation (in a new goroutine) when there is none.
func lookup(path string) (*result, error) {
	f, _, err := safefile.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	k := key{abs, st.Size(), st.ModTime().UnixNano()}
	mu.Lock()
	r, ok := memo[k]
	if !ok {
		r = &result{done: make(chan struct{})}
		memo[k] = r
	}
	mu.Unlock()
	if ok {
		f.Close()
		return r, nil
	}
	go func() {
		defer close(r.done)
		defer f.Close()
		r.digest, r.err = hashFile(f, st.Size())
		if r.err != nil {
			r.err = fmt.Errorf("%s: %w", path, r.err)
			mu.Lock()
			delete(memo, k) // a later call tries again
			mu.Unlock()
		}
	}()
	return r, nil
}

// hashReader is the fallback of hashFile: SHA-256 through read calls.
func hashReader(r io.Reader) (string, error) {
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
