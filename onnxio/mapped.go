package onnxio

import (
	"errors"
	"fmt"
	"sync"
	"unsafe"

	"github.com/onnxpost/onnxpost/internal/safefile"
	pb "github.com/onnxpost/onnxpost/onnxio/internal/onnxpb"
)

// errNoMmap reports that memory maps are not used on this platform; the
// readers then copy as Model.Initializer does.
var errNoMmap = errors.New("onnxio: memory maps not supported here")

// ErrMappedClosed is returned by Mapped.Initializer after Close.
var ErrMappedClosed = errors.New("onnxio: mapped view closed")

// Mapped reads a model's initializers without copying their external data:
// each external data file is memory-mapped read-only on first use (on
// Linux; elsewhere, and for inline tensors, it reads as Model.Initializer
// does), and a tensor's bytes are a window of the mapping. Reading a large
// model this way costs no read system calls, no zeroed buffers and no
// garbage; the pages come from the page cache. Pages touched count in the
// process's resident set until Release drops them (the page cache keeps
// them), so a reader that releases what it has used keeps its resident
// set at the size of the tensors in flight.
//
// The bytes of a tensor from a Mapped view are read-only (writing them
// faults) and valid until Close: use them, copy what must outlive the view,
// then Release. A Mapped view is safe for concurrent use.
//
// Files are checked as Model.Initializer checks them (regular files inside
// the model's folder, ranges inside the file). A file truncated by another
// process while mapped makes the next access to the lost pages fault: call
// debug.SetPanicOnFault(true) in the reading goroutine and convert the
// recovered value with Fault.
type Mapped struct {
	m      *Model
	mu     sync.Mutex
	files  map[string][]byte          // resolved path → whole-file mapping
	refs   map[*pb.TensorProto]extRef // checked references
	closed bool
}

// Mapped returns a view of m's initializers that maps external data
// instead of reading it. Close it when done.
func (m *Model) Mapped() *Mapped {
	return &Mapped{m: m, files: map[string][]byte{}, refs: map[*pb.TensorProto]extRef{}}
}

// Initializer returns the named initializer of the main graph; external
// data are a read-only window of the file's mapping.
func (v *Mapped) Initializer(name string) (*Tensor, error) {
	i, ok := v.m.index[name]
	if !ok {
		return nil, fmt.Errorf("%w: initializer %q", ErrNotFound, name)
	}
	t := v.m.p.Graph.Initializer[i]
	dt := DType(t.GetDataType())
	if t.GetDataLocation() != pb.TensorProto_EXTERNAL || dt == String {
		return v.m.tensorFromProto(t)
	}
	ref, err := v.ref(t)
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %w", t.GetName(), err)
	}
	if ref.file != nil {
		return v.m.tensorFromProto(t) // spilled: read from the spill file
	}
	data, err := v.file(ref.path)
	if errors.Is(err, errNoMmap) {
		return v.m.tensorFromProto(t)
	}
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %w", t.GetName(), err)
	}
	if ref.offset > int64(len(data)) || ref.length > int64(len(data))-ref.offset {
		return nil, fmt.Errorf("%w: tensor %q: external data %s changed size while mapped (%d bytes mapped, the tensor needs %d + %d)",
			ErrFormat, t.GetName(), ref.path, len(data), ref.offset, ref.length)
	}
	end := ref.offset + ref.length
	return &Tensor{Name: t.GetName(), DType: dt, Shape: append([]int64{}, t.Dims...), data: data[ref.offset:end:end]}, nil
}

// ref checks t (as Model.Initializer does: limits, sizes, a regular file
// inside the model's folder) and returns its external reference; the
// result is kept, so a tensor read several times is checked, and its path
// resolved, once.
func (v *Mapped) ref(t *pb.TensorProto) (extRef, error) {
	v.mu.Lock()
	r, ok := v.refs[t]
	v.mu.Unlock()
	if ok {
		return r, nil
	}
	if _, err := v.m.checkTensor(t); err != nil {
		return r, err
	}
	r, err := v.m.externalRef(t)
	if err != nil {
		return r, err
	}
	v.mu.Lock()
	v.refs[t] = r
	v.mu.Unlock()
	return r, nil
}

// file returns the mapping of the file at path, mapping it on first use.
func (v *Mapped) file(path string) ([]byte, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return nil, ErrMappedClosed
	}
	if b, ok := v.files[path]; ok {
		return b, nil
	}
	f, size, err := safefile.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := mmapFile(f, size)
	if err != nil {
		return nil, err
	}
	v.files[path] = b
	return b, nil
}

// owner returns the path of the mapping holding addr, or "".
func (v *Mapped) owner(addr uintptr) string {
	v.mu.Lock()
	defer v.mu.Unlock()
	for p, b := range v.files {
		if len(b) == 0 {
			continue
		}
		lo := uintptr(unsafe.Pointer(&b[0]))
		if addr >= lo && addr < lo+uintptr(len(b)) {
			return p
		}
	}
	return ""
}

// Release drops the pages of t's bytes from the process's resident set
// when they belong to one of v's mappings (t stays readable: touching it
// again faults the pages back in from the page cache). Other tensors are
// left alone.
func (v *Mapped) Release(t *Tensor) { v.window(t, releasePages) }

// window calls fn, with v locked (so that Close cannot unmap the file
// meanwhile), with the mapping holding t's bytes, their offset in it and
// their length; it does nothing when t is empty or not a window of one of
// v's mappings.
func (v *Mapped) window(t *Tensor, fn func(b []byte, off, n int)) {
	if t == nil || len(t.data) == 0 {
		return
	}
	addr := uintptr(unsafe.Pointer(&t.data[0]))
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, b := range v.files {
		if len(b) == 0 {
			continue
		}
		lo := uintptr(unsafe.Pointer(&b[0]))
		if addr >= lo && addr < lo+uintptr(len(b)) {
			fn(b, int(addr-lo), len(t.data))
			return
		}
	}
}

// Populate maps t's pages into the process in one call when t is a window
// of one of v's mappings (madvise MADV_POPULATE_READ on Linux 5.14 and
// later; nothing elsewhere), instead of one page fault per few pages as t
// is read. Call it for tensors that are about to be read in full. Errors
// are ignored: the pages then fault in as they are touched (a range past
// the end of a shrunk file faults when read, see Fault).
func (v *Mapped) Populate(t *Tensor) { v.window(t, populatePages) }

// Fault converts a value recovered from a panic into an error wrapping
// ErrFormat when it is a memory fault inside one of v's mappings (the file
// shrank while mapped), and returns nil otherwise.
func (v *Mapped) Fault(r any) error {
	af, ok := r.(interface{ Addr() uintptr })
	if !ok {
		return nil
	}
	if p := v.owner(af.Addr()); p != "" {
		return fmt.Errorf("%w: external data %s changed while it was read (truncated by another process?)", ErrFormat, p)
	}
	return nil
}

// Close unmaps every file. Tensors from v must not be used afterwards.
func (v *Mapped) Close() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.closed = true
	var first error
	for p, b := range v.files {
		if err := munmapFile(b); err != nil && first == nil {
			first = err
		}
		delete(v.files, p)
	}
	return first
}
