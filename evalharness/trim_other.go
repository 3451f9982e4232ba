//go:build !cgo || !linux || musl

package evalharness

// releaseFreed does nothing where the C heap cannot be trimmed.
func releaseFreed() {}
