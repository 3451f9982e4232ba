//go:build linux && (amd64 || arm64)

package onnxio

import (
	"errors"
	"syscall"
	"unsafe"
)

const (
	renameNoReplace = 1 << 0 // RENAME_NOREPLACE
	renameExchange  = 1 << 1 // RENAME_EXCHANGE
	atFDCWD         = -100   // AT_FDCWD
)

func renameat2(from, to string, flags uint) error {
	f, err := syscall.BytePtrFromString(from)
	if err != nil {
		return err
	}
	t, err := syscall.BytePtrFromString(to)
	if err != nil {
		return err
	}
	fd := atFDCWD
	_, _, e := syscall.Syscall6(sysRenameat2, uintptr(fd), uintptr(unsafe.Pointer(f)), uintptr(fd), uintptr(unsafe.Pointer(t)), uintptr(flags), 0)
	if e != 0 {
		return e
	}
	return nil
}

// swapInto puts tmp at path atomically. When path held a file, the two are
// exchanged (renameat2 RENAME_EXCHANGE): the replaced file is then at tmp,
// and swapInto returns true so the caller reads and removes it. Each
// replaced model is thus obtained by exactly one saver, even with
// concurrent saves to one path. ok is false where the kernel or file system
// cannot do this; the caller then falls back to a plain rename.
func swapInto(tmp, path string) (swapped, ok bool, err error) {
	for range 8 {
		err := renameat2(tmp, path, renameExchange)
		if err == nil {
			return true, true, nil
		}
		if !errors.Is(err, syscall.ENOENT) {
			if errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOSYS) || errors.Is(err, syscall.EOPNOTSUPP) {
				return false, false, nil
			}
			return false, true, err
		}
		// path does not exist (or tmp vanished): create it without
		// replacing a file that another saver put there meanwhile
		err = renameat2(tmp, path, renameNoReplace)
		if err == nil {
			return false, true, nil
		}
		if errors.Is(err, syscall.EEXIST) {
			continue
		}
		if errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOSYS) || errors.Is(err, syscall.EOPNOTSUPP) {
			return false, false, nil
		}
		return false, true, err
	}
	return false, true, errors.New("onnxio: the output kept appearing and disappearing during the save")
}
