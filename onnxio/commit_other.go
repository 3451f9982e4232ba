//go:build !(linux && (amd64 || arm64))

package onnxio

// swapInto reports that an atomic exchange is not available here; Save
// falls back to a plain rename.
func swapInto(tmp, path string) (swapped, ok bool, err error) { return false, false, nil }
