// Package safefile opens files whose bytes are untrusted (models, external
// data, datasets, test-data tensors) so that a special file cannot hang or
// flood the reader: the path is checked with stat (following symlinks)
// before it is opened, opened without blocking (O_NONBLOCK, so a FIFO that
// appears between the check and the open cannot block), and checked again
// with fstat on the opened file. Only regular files pass.
package safefile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// ErrNotRegular reports a path that is not a regular file: a folder, a
// FIFO, a device, a socket (a symlink is followed: a link to /dev/zero is
// a character device).
var ErrNotRegular = errors.New("not a regular file")

// ErrTooLarge reports a file larger than the caller's limit.
var ErrTooLarge = errors.New("file too large")

// kind names a non-regular file mode for error messages.
func kind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a folder"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeSocket != 0:
		return "a socket"
	}
	return "not a regular file"
}

func check(path string, st fs.FileInfo) error {
	if st.Mode().IsRegular() {
		return nil
	}
	return fmt.Errorf("%s is %s: %w", path, kind(st.Mode()), ErrNotRegular)
}

// Open opens path for reading when it is a regular file (after following
// symlinks) and returns the file and its size. Anything else is refused
// with an error wrapping ErrNotRegular, before it is opened when the first
// check sees it.
func Open(path string) (*os.File, int64, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, 0, err
	}
	if err := check(path, st); err != nil {
		return nil, 0, err
	}
	f, err := os.OpenFile(path, os.O_RDONLY|oNonblock, 0)
	if err != nil {
		return nil, 0, err
	}
	st, err = f.Stat()
	if err == nil {
		err = check(path, st)
	}
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, st.Size(), nil
}

// ReadFile reads the regular file at path, refusing special files (see
// Open) and files over max bytes (max <= 0: no limit) with an error
// wrapping ErrTooLarge. It never reads more than max+1 bytes, so a file
// that grows while it is read cannot exceed the limit either.
func ReadFile(path string, max int64) ([]byte, error) {
	f, size, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if max > 0 && size > max {
		return nil, fmt.Errorf("%s is %d bytes, over the limit of %d: %w", path, size, max, ErrTooLarge)
	}
	r := io.Reader(f)
	if max > 0 {
		r = io.LimitReader(f, max+1)
	}
	b := make([]byte, 0, size+1)
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	if max > 0 && int64(len(b)) > max {
		return nil, fmt.Errorf("%s grew past the limit of %d bytes while it was read: %w", path, max, ErrTooLarge)
	}
	return b, nil
}
