package merge

import (
	"encoding/binary"
	"fmt"
	"sync"
	"unsafe"

	"github.com/onnxpost/onnxpost/onnxio"
)

// nativeLE reports whether the machine is little-endian (ONNX raw data is).
var nativeLE = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// view32 returns a float32 tensor's values without copying when its raw
// bytes are aligned (they are read-only: the kernels never write to inputs),
// else a converted copy; other dtypes (float16, bfloat16, float8...) are
// widened to float32.
func view32(t *onnxio.Tensor) ([]float32, error) {
	b := t.Bytes()
	if t.DType == onnxio.Float && nativeLE && int64(len(b)) == 4*t.NumElements() {
		if len(b) == 0 {
			return []float32{}, nil
		}
		if uintptr(unsafe.Pointer(&b[0]))%4 == 0 {
			return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), len(b)/4), nil
		}
	}
	return t.Float32()
}

// view64 is view32 for float64 tensors.
func view64(t *onnxio.Tensor) ([]float64, error) {
	b := t.Bytes()
	if t.DType == onnxio.Double && nativeLE && int64(len(b)) == 8*t.NumElements() {
		if len(b) == 0 {
			return []float64{}, nil
		}
		if uintptr(unsafe.Pointer(&b[0]))%8 == 0 {
			return unsafe.Slice((*float64)(unsafe.Pointer(&b[0])), len(b)/8), nil
		}
	}
	return t.Float64()
}

// outBuffer returns a slice of n values to compute a result into and a
// function that wraps it into a tensor of dtype dt (without copying, in a
// zeroed buffer from alloc, for float32 and float64 on little-endian
// machines).
func outBuffer[T Float](name string, dt onnxio.DType, shape []int64, n int, alloc func(int) []byte) ([]T, func() (*onnxio.Tensor, error)) {
	var zero T
	size := int(unsafe.Sizeof(zero))
	direct := nativeLE && (size == 4 && dt == onnxio.Float || size == 8 && dt == onnxio.Double)
	if direct && n > 0 {
		raw := alloc(n * size)
		vals := unsafe.Slice((*T)(unsafe.Pointer(&raw[0])), n)
		return vals, func() (*onnxio.Tensor, error) { return onnxio.NewTensor(name, dt, shape, raw) }
	}
	vals := make([]T, n)
	return vals, func() (*onnxio.Tensor, error) {
		switch v := any(vals).(type) {
		case []float32:
			return onnxio.FromFloat32(name, dt, shape, v)
		case []float64:
			return onnxio.FromFloat64(name, dt, shape, v)
		}
		return nil, fmt.Errorf("merge: unsupported element type %T", vals)
	}
}

// bufPool recycles the output buffers of a streaming merge: Save hands each
// merged tensor back once its bytes are in the data file (SaveOptions.
// Written), so a merge of thousands of tensors reuses a few buffers
// instead of faulting fresh memory in for every tensor.
type bufPool struct {
	mu   sync.Mutex
	free map[int][][]byte
	out  map[*byte]int // buffers handed out, by first byte
}

// maxFreePerSize bounds the recycled buffers kept per size.
const maxFreePerSize = 4

// get returns a zeroed buffer of n bytes (n > 0).
func (p *bufPool) get(n int) []byte {
	p.mu.Lock()
	var b []byte
	if l := p.free[n]; len(l) > 0 {
		b = l[len(l)-1]
		p.free[n] = l[:len(l)-1]
	}
	p.mu.Unlock()
	if b == nil {
		b = make([]byte, n)
	} else {
		clear(b)
	}
	p.mu.Lock()
	if p.out == nil {
		p.out = map[*byte]int{}
	}
	p.out[&b[0]] = n
	p.mu.Unlock()
	return b
}

// put takes back a buffer handed out by get; other byte slices are ignored.
func (p *bufPool) put(b []byte) {
	if len(b) == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	n, ok := p.out[&b[0]]
	if !ok || n != len(b) {
		return
	}
	delete(p.out, &b[0])
	if p.free == nil {
		p.free = map[int][][]byte{}
	}
	if len(p.free[n]) < maxFreePerSize {
		p.free[n] = append(p.free[n], b[:n:n])
	}
}
