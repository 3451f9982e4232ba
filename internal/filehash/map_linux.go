package filehash

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"runtime/debug"
	"syscall"
)

// mapMin is the size from which hashFile reads the file through a memory
// map (the page cache's pages, no copy into a buffer) rather than read
// calls.
const mapMin = 4 << 20

// hashFile returns the hex SHA-256 of the size bytes of f. A file that
// shrinks while it is hashed gives an error, not a crash (the fault of a
// read past the new end is recovered).
func hashFile(f *os.File, size int64) (digest string, err error) {
	if size < mapMin || int64(int(size)) != size {
		return hashReader(f)
	}
	b, err := syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return hashReader(f)
	}
	defer syscall.Munmap(b)
	_ = syscall.Madvise(b, syscall.MADV_SEQUENTIAL)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			digest, err = "", errors.New("the file changed size while it was hashed")
		}
	}()
	h := sha256.New()
	const chunk = 8 << 20
	for off := 0; off < len(b); off += chunk {
		h.Write(b[off:min(off+chunk, len(b))])
		// drop the pages from this process's resident set: they stay in
		// the page cache for the merge that reads them next
		_ = syscall.Madvise(b[off:min(off+chunk, len(b))], syscall.MADV_DONTNEED)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
