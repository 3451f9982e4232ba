//go:build cgo && linux && !musl

package evalharness

/*
#include <malloc.h>
*/
import "C"

// releaseFreed hands the C heap's free memory back to the system
// (glibc's malloc_trim, every arena): what a closed ONNX Runtime session
// freed on one thread stays in that thread's arena otherwise, where the
// next session's threads do not reuse it.
func releaseFreed() { C.malloc_trim(0) }
