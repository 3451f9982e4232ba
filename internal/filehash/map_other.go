//go:build !linux

package filehash

import "os"

// hashFile returns the hex SHA-256 of f, through read calls.
func hashFile(f *os.File, size int64) (string, error) { return hashReader(f) }
