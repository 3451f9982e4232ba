package onnxio

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"

	"google.golang.org/protobuf/proto"

	pb "github.com/onnxpost/onnxpost/onnxio/internal/onnxpb"
)

// spillLocation is the external-data location written on the tensors a
// model keeps in its spill file. It never names a file: a NUL byte is
// refused in every location read from a model, and only the tensors the
// model spilled itself (known by identity) are read from the spill file.
const spillLocation = "\x00onnxpost-spill"

// spillFile is a scratch file holding the data of tensors set on a model
// (and shared with its clones): appended to under mu, read with ReadAt.
type spillFile struct {
	mu  sync.Mutex
	f   *os.File
	end int64
	min int64
}

// Spill makes the model keep the data of every tensor of at least minBytes
// that SetInitializer sets from now on in a scratch file in dir instead of
// in memory, so a transform that rewrites a large model weight by weight
// holds one weight at a time. The tensors read back, save and serialize as
// before (Save copies them into its data file). The scratch file is removed
// from dir as soon as it is created (where the system allows), so nothing
// is left behind after a crash; its space is freed when the model and its
// clones are gone (or the process ends). Clones share the file. Calling
// Spill again changes minBytes only.
func (m *Model) Spill(dir string, minBytes int64) error {
	if minBytes < 1 {
		minBytes = 1
	}
	if m.spill != nil {
		m.spill.mu.Lock()
		m.spill.min = minBytes
		m.spill.mu.Unlock()
		return nil
	}
	f, err := os.CreateTemp(dir, ".onnxpost-spill-*")
	if err != nil {
		return fmt.Errorf("creating the spill file: %w", err)
	}
	// unlinked at once: the open file stays readable; on systems that
	// refuse to remove an open file it stays until the process ends
	os.Remove(f.Name())
	m.spill = &spillFile{f: f, min: minBytes}
	m.spilled = map[*pb.TensorProto]extRef{}
	return nil
}

// Spilled returns how many bytes of tensor data the model keeps in its
// spill file (including replaced tensors), 0 without Spill.
func (m *Model) Spilled() int64 {
	if m.spill == nil {
		return 0
	}
	m.spill.mu.Lock()
	defer m.spill.mu.Unlock()
	return m.spill.end
}

// spillTensor writes t's data to the spill file and returns the external
// tensor proto that refers to it, or nil when t stays in memory.
func (m *Model) spillTensor(t *Tensor) (*pb.TensorProto, error) {
	s := m.spill
	if s == nil || t.DType == String {
		return nil, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := int64(len(t.data))
	if n < s.min {
		return nil, nil
	}
	off := s.end
	if _, err := s.f.WriteAt(t.data, off); err != nil {
		return nil, fmt.Errorf("spilling tensor %q: %w", t.Name, err)
	}
	s.end += n
	p := &pb.TensorProto{
		Name:         proto.String(t.Name),
		DataType:     proto.Int32(int32(t.DType)),
		Dims:         append([]int64{}, t.Shape...),
		DataLocation: pb.TensorProto_EXTERNAL.Enum(),
		ExternalData: []*pb.StringStringEntryProto{
			{Key: proto.String("location"), Value: proto.String(spillLocation)},
			{Key: proto.String("offset"), Value: proto.String(strconv.FormatInt(off, 10))},
			{Key: proto.String("length"), Value: proto.String(strconv.FormatInt(n, 10))},
		},
	}
	m.spilled[p] = extRef{file: s.f, offset: off, length: n}
	return p, nil
}

// spilledRef returns the spill-file reference of t when the model spilled
// it.
func (m *Model) spilledRef(t *pb.TensorProto) (extRef, bool) {
	if m.spilled == nil {
		return extRef{}, false
	}
	r, ok := m.spilled[t]
	return r, ok
}

// cloneSpill gives c (a proto.Clone of m) m's spill file and its spilled
// tensors, found by position (the clone's initializers are in m's order).
func (m *Model) cloneSpill(c *Model) {
	if m.spill == nil {
		return
	}
	c.spill = m.spill
	c.spilled = map[*pb.TensorProto]extRef{}
	src, dst := m.p.GetGraph().GetInitializer(), c.p.GetGraph().GetInitializer()
	for i, t := range src {
		if r, ok := m.spilled[t]; ok && i < len(dst) {
			c.spilled[dst[i]] = r
		}
	}
}

// ErrNotReferencable reports a model that WriteReferencing cannot write:
// one without a folder, or holding tensors of its spill file.
var ErrNotReferencable = errors.New("onnxio: the model's tensors cannot be referenced from a file")

// WriteReferencing writes the model to a new hidden file in its own
// folder (Dir) whose external tensors keep referring to the model's data
// files, and returns the file's path; the caller removes it. Nothing is
// copied but the graph and the inline tensors, so a runtime can open a
// multi-gigabyte model (with graph edits such as extra outputs) from that
// file and map its weights instead of receiving them serialized. It
// refuses, with ErrNotReferencable, a model loaded without a folder (or
// from an fs.FS) or holding spilled tensors (Spill), whose data no file of the folder holds.
func (m *Model) WriteReferencing() (string, error) {
	if m.dir == "" {
		return "", fmt.Errorf("%w: it has no folder", ErrNotReferencable)
	}
	if m.fsys != nil {
		return "", fmt.Errorf("%w: its folder is in a file system other than the OS's", ErrNotReferencable)
	}
	for _, t := range m.p.GetGraph().GetInitializer() {
		if _, ok := m.spilledRef(t); ok {
			return "", fmt.Errorf("%w: tensor %q is held in the spill file", ErrNotReferencable, t.GetName())
		}
		if isExternal(t) {
			if _, err := m.externalRef(t); err != nil {
				return "", fmt.Errorf("tensor %q: %w", t.GetName(), err)
			}
		}
	}
	b, err := m.marshalWith(m.p.GetGraph().GetInitializer())
	if err != nil {
		return "", err
	}
	if int64(len(b)) > DefaultLimits.MaxModelBytes {
		return "", fmt.Errorf("%w: its inline part is %d bytes, over protobuf's 2 GB limit", ErrLimit, len(b))
	}
	f, err := os.CreateTemp(m.dir, ".onnxpost-ref-*.onnx")
	if err != nil {
		return "", err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(f.Name())
		return "", err
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// ExternalBytes returns how many bytes of the main graph's initializers
// are held outside the serialized model: in external data files or in the
// spill file.
func (m *Model) ExternalBytes() int64 {
	var n int64
	for _, t := range m.p.GetGraph().GetInitializer() {
		if !isExternal(t) {
			continue
		}
		if k, err := NumElements(t.Dims); err == nil {
			if s := DType(t.GetDataType()).ByteSize(k); s > 0 {
				n += s
			}
		}
	}
	return n
}
