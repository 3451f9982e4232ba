package onnxio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/onnxpost/onnxpost/internal/safefile"
	pb "github.com/onnxpost/onnxpost/onnxio/internal/onnxpb"
)

// Limits bounds what Load accepts from an untrusted file.
type Limits struct {
	// MaxModelBytes bounds the size of the protobuf file itself.
	MaxModelBytes int64
	// MaxTensorElements bounds the element count of one tensor.
	MaxTensorElements int64
	// MaxRank bounds the number of dims of one tensor.
	MaxRank int
	// MaxNodes bounds the number of nodes of the main graph.
	MaxNodes int
}

// DefaultLimits are the limits Load uses unless WithLimits says otherwise.
var DefaultLimits = Limits{
	MaxModelBytes:     math.MaxInt32, // protobuf's own 2 GB limit
	MaxTensorElements: 1 << 36,
	MaxRank:           32,
	MaxNodes:          1 << 22,
}

// Option configures Load and LoadBytes.
type Option func(*loadConfig)

type loadConfig struct {
	limits Limits
}

// WithLimits replaces DefaultLimits.
func WithLimits(l Limits) Option { return func(c *loadConfig) { c.limits = l } }

// Model is a loaded ONNX model. Its methods never modify the files it was
// loaded from. A Model is not safe for concurrent mutation; concurrent
// reads (Initializer, Weights, Bytes, Save, ...) are safe.
type Model struct {
	p      *pb.ModelProto
	dir    string // folder external data is resolved against; "" forbids external data
	fsys   fs.FS  // the file system dir is in (a slash-separated path of it); nil: the OS's
	limits Limits
	index  map[string]int // initializer name → index in graph.initializer
	// spill, when set, holds the data of large tensors set on the model
	// (see Spill); spilled maps each such tensor to its place there.
	spill   *spillFile
	spilled map[*pb.TensorProto]extRef
}

// openModel applies opts and opens the model file at path for reading: a
// regular file (ErrFormat and ErrNotRegular otherwise) within the size
// limit. The caller closes the file.
func openModel(path string, opts []Option) (loadConfig, *os.File, int64, error) {
	cfg := loadConfig{limits: DefaultLimits}
	for _, o := range opts {
		o(&cfg)
	}
	f, size, err := safefile.Open(path)
	if errors.Is(err, ErrNotRegular) {
		return cfg, nil, 0, fmt.Errorf("%w: %w", ErrFormat, err)
	}
	if err != nil {
		return cfg, nil, 0, err
	}
	if size > cfg.limits.MaxModelBytes {
		f.Close()
		return cfg, nil, 0, fmt.Errorf("%w: %s is %d bytes, over the %d-byte limit", ErrLimit, path, size, cfg.limits.MaxModelBytes)
	}
	return cfg, f, size, nil
}

// Load reads and validates the model at path. External data is resolved
// relative to the model's folder and read lazily.
func Load(path string, opts ...Option) (*Model, error) {
	_, f, size, err := openModel(path, opts)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, size)
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	m, err := LoadBytes(b, dir, opts...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// LoadBytes parses and validates a serialized model. dir is the folder its
// external data lives in; with dir == "" a model that references external
// data is rejected. b is retained: the caller must not modify it.
func LoadBytes(b []byte, dir string, opts ...Option) (*Model, error) {
	return loadBytes(b, dir, nil, opts)
}

// loadBytes is LoadBytes with external data resolved in fsys (nil: the
// OS's file system).
func loadBytes(b []byte, dir string, fsys fs.FS, opts []Option) (*Model, error) {
	cfg := loadConfig{limits: DefaultLimits}
	for _, o := range opts {
		o(&cfg)
	}
	if int64(len(b)) > cfg.limits.MaxModelBytes {
		return nil, fmt.Errorf("%w: model is %d bytes, over the %d-byte limit", ErrLimit, len(b), cfg.limits.MaxModelBytes)
	}
	p := &pb.ModelProto{}
	if err := (proto.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(b, p); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	m := &Model{p: p, dir: dir, fsys: fsys, limits: cfg.limits}
	if err := m.validate(); err != nil {
		return nil, err
	}
	m.reindex()
	return m, nil
}

// New returns an empty model (IR version 10, ai.onnx opset given) with an
// empty graph named name.
func New(name string, opset int64) *Model {
	p := &pb.ModelProto{
		IrVersion:    proto.Int64(10),
		ProducerName: proto.String("onnxpost"),
		OpsetImport:  []*pb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(opset)}},
		Graph:        &pb.GraphProto{Name: proto.String(name)},
	}
	m := &Model{p: p, limits: DefaultLimits}
	m.reindex()
	return m
}

// Dir returns the folder external data is resolved against: a path of
// the file system for a model from Load, a path inside the fs.FS for one
// from LoadFS.
func (m *Model) Dir() string { return m.dir }

// Clone returns a deep copy of the model (external data stays referenced,
// not copied).
func (m *Model) Clone() *Model {
	c := &Model{p: proto.Clone(m.p).(*pb.ModelProto), dir: m.dir, fsys: m.fsys, limits: m.limits}
	m.cloneSpill(c)
	c.reindex()
	return c
}

// Equal reports whether two models have equal protobufs (proto.Equal,
// unknown fields included).
func (m *Model) Equal(o *Model) bool { return proto.Equal(m.p, o.p) }

func (m *Model) reindex() {
	m.index = map[string]int{}
	if m.p.Graph == nil {
		return
	}
	for i, t := range m.p.Graph.Initializer {
		m.index[t.GetName()] = i
	}
}

func (m *Model) validate() error {
	g := m.p.GetGraph()
	if g == nil {
		return fmt.Errorf("%w: model has no graph", ErrFormat)
	}
	if len(g.Node) > m.limits.MaxNodes {
		return fmt.Errorf("%w: %d nodes, over the limit of %d", ErrLimit, len(g.Node), m.limits.MaxNodes)
	}
	var errs []error
	check := func(where string, t *pb.TensorProto) {
		if _, err := m.checkTensor(t); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w", where, t.GetName(), err))
		}
	}
	var walk func(g *pb.GraphProto, depth int)
	walk = func(g *pb.GraphProto, depth int) {
		if depth > 64 {
			errs = append(errs, fmt.Errorf("%w: subgraphs nested deeper than 64", ErrLimit))
			return
		}
		for _, t := range g.Initializer {
			check("initializer", t)
		}
		for _, n := range g.Node {
			for _, a := range n.Attribute {
				if a.T != nil {
					check("attribute "+a.GetName()+" of node", a.T)
				}
				for _, t := range a.Tensors {
					check("attribute "+a.GetName()+" of node", t)
				}
				if a.G != nil {
					walk(a.G, depth+1)
				}
				for _, sg := range a.Graphs {
					walk(sg, depth+1)
				}
			}
		}
	}
	walk(g, 0)
	if err := checkUniqueInitializers(g, 0); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 10 {
		errs = append(errs[:10], fmt.Errorf("... and %d more", len(errs)-10))
	}
	return errors.Join(errs...)
}

// checkUniqueInitializers refuses a graph (or, recursively, a subgraph)
// in which two initializers, or an initializer and a sparse initializer,
// share a name: which tensor a node reads would be undefined, and passes
// that index initializers by name would act on one of them only.
func checkUniqueInitializers(g *pb.GraphProto, depth int) error {
	if g == nil || depth > 64 {
		return nil
	}
	seen := make(map[string]bool, len(g.Initializer))
	for _, t := range g.Initializer {
		if seen[t.GetName()] {
			return fmt.Errorf("%w: two initializers are named %q", ErrFormat, t.GetName())
		}
		seen[t.GetName()] = true
	}
	for _, st := range g.SparseInitializer {
		name := st.GetValues().GetName()
		if seen[name] {
			return fmt.Errorf("%w: initializer %q is defined twice (an initializer and a sparse initializer, or two sparse initializers)", ErrFormat, name)
		}
		seen[name] = true
	}
	for _, n := range g.Node {
		for _, a := range n.Attribute {
			if err := checkUniqueInitializers(a.G, depth+1); err != nil {
				return err
			}
			for _, sg := range a.Graphs {
				if err := checkUniqueInitializers(sg, depth+1); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// extRef is a parsed external-data reference: a file in the model's
// folder (path), or the model's spill file (file).
type extRef struct {
	path           string
	file           *os.File // the spill file, when set (path and fsys unused)
	fsys           fs.FS    // nil: path is an OS path
	offset, length int64
}

// checkTensor validates dims, type and data size; for external data it
// resolves and checks the reference. It returns the element count.
func (m *Model) checkTensor(t *pb.TensorProto) (int64, error) {
	if len(t.Dims) > m.limits.MaxRank {
		return 0, fmt.Errorf("%w: rank %d over the limit of %d", ErrLimit, len(t.Dims), m.limits.MaxRank)
	}
	n, err := NumElements(t.Dims)
	if err != nil {
		return 0, err
	}
	if n > m.limits.MaxTensorElements {
		return 0, fmt.Errorf("%w: %d elements, over the limit of %d", ErrLimit, n, m.limits.MaxTensorElements)
	}
	dt := DType(t.GetDataType())
	if dt == String {
		if len(t.StringData) != int(n) {
			return 0, fmt.Errorf("%w: string tensor has %d elements, dims say %d", ErrFormat, len(t.StringData), n)
		}
		return n, nil
	}
	want := dt.ByteSize(n)
	if want < 0 {
		return 0, fmt.Errorf("%w: data type %d", ErrDType, t.GetDataType())
	}
	if t.GetDataLocation() == pb.TensorProto_EXTERNAL {
		ref, err := m.externalRef(t)
		if err != nil {
			return 0, err
		}
		if ref.length != want {
			return 0, fmt.Errorf("%w: external data length %d, %v %v needs %d", ErrFormat, ref.length, dt, t.Dims, want)
		}
		return n, nil
	}
	if t.RawData != nil {
		if int64(len(t.RawData)) != want {
			return 0, fmt.Errorf("%w: raw_data has %d bytes, %v %v needs %d", ErrFormat, len(t.RawData), dt, t.Dims, want)
		}
		return n, nil
	}
	got, wantCount := typedCount(t, dt, n)
	if got != wantCount {
		return 0, fmt.Errorf("%w: typed data has %d values, %v %v needs %d", ErrFormat, got, dt, t.Dims, wantCount)
	}
	return n, nil
}

// typedCount returns how many typed-field values t holds and how many its
// type and element count need.
func typedCount(t *pb.TensorProto, dt DType, n int64) (got, want int64) {
	switch dt {
	case Float:
		return int64(len(t.FloatData)), n
	case Complex64:
		return int64(len(t.FloatData)), 2 * n
	case Double:
		return int64(len(t.DoubleData)), n
	case Complex128:
		return int64(len(t.DoubleData)), 2 * n
	case Int64:
		return int64(len(t.Int64Data)), n
	case Uint32, Uint64:
		return int64(len(t.Uint64Data)), n
	case Uint4, Int4, Float4E2M1:
		return int64(len(t.Int32Data)), (n + 1) / 2
	case Uint2, Int2:
		return int64(len(t.Int32Data)), (n + 3) / 4
	}
	return int64(len(t.Int32Data)), n
}

// externalRef parses and checks t's external-data reference.
func (m *Model) externalRef(t *pb.TensorProto) (extRef, error) {
	if r, ok := m.spilledRef(t); ok {
		return r, nil
	}
	var ref extRef
	ref.offset = 0
	ref.length = -1
	loc := ""
	for _, kv := range t.ExternalData {
		switch kv.GetKey() {
		case "location":
			loc = kv.GetValue()
		case "offset":
			v, err := strconv.ParseInt(kv.GetValue(), 10, 64)
			if err != nil || v < 0 {
				return ref, fmt.Errorf("%w: bad external data offset %q", ErrFormat, kv.GetValue())
			}
			ref.offset = v
		case "length":
			v, err := strconv.ParseInt(kv.GetValue(), 10, 64)
			if err != nil || v < 0 {
				return ref, fmt.Errorf("%w: bad external data length %q", ErrFormat, kv.GetValue())
			}
			ref.length = v
		}
	}
	if loc == "" {
		return ref, fmt.Errorf("%w: external data without a location", ErrFormat)
	}
	if m.dir == "" {
		return ref, fmt.Errorf("%w: external data %q but the model was loaded without a folder", ErrExternalPath, loc)
	}
	var path string
	var st fs.FileInfo
	var err error
	if m.fsys != nil {
		path, err = resolveFS(m.fsys, m.dir, loc)
		if err != nil {
			return ref, err
		}
		st, err = fs.Stat(m.fsys, path)
		ref.fsys = m.fsys
	} else {
		path, err = resolveLocal(m.dir, loc)
		if err != nil {
			return ref, err
		}
		st, err = os.Stat(path)
	}
	if err != nil {
		return ref, fmt.Errorf("%w: external data: %v", ErrFormat, err)
	}
	if !st.Mode().IsRegular() {
		return ref, fmt.Errorf("%w: external data %q: %w", ErrFormat, loc, ErrNotRegular)
	}
	if ref.length < 0 {
		ref.length = st.Size() - ref.offset
	}
	if ref.offset > st.Size() || ref.length > st.Size()-ref.offset {
		return ref, fmt.Errorf("%w: external data %q: offset %d + length %d past the end of the %d-byte file", ErrFormat, loc, ref.offset, ref.length, st.Size())
	}
	ref.path = path
	return ref, nil
}

// resolveLocal resolves loc inside dir, refusing absolute paths, ".." and
// symlinks that leave dir.
func resolveLocal(dir, loc string) (string, error) {
	if strings.ContainsRune(loc, 0) || !filepath.IsLocal(filepath.FromSlash(loc)) {
		return "", fmt.Errorf("%w: %q", ErrExternalPath, loc)
	}
	base, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", err
	}
	p, err := filepath.EvalSymlinks(filepath.Join(base, filepath.FromSlash(loc)))
	if err != nil {
		return "", fmt.Errorf("%w: external data %q: %v", ErrFormat, loc, err)
	}
	rel, err := filepath.Rel(base, p)
	if err != nil || !filepath.IsLocal(rel) {
		return "", fmt.Errorf("%w: %q resolves to %s", ErrExternalPath, loc, p)
	}
	return p, nil
}

// tensorFromProto decodes a TensorProto (already validated) into a Tensor,
// reading external data when needed.
func (m *Model) tensorFromProto(t *pb.TensorProto) (*Tensor, error) {
	n, err := m.checkTensor(t)
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %w", t.GetName(), err)
	}
	dt := DType(t.GetDataType())
	out := &Tensor{Name: t.GetName(), DType: dt, Shape: append([]int64{}, t.Dims...)}
	if dt == String {
		out.Strings = t.StringData
		return out, nil
	}
	if t.GetDataLocation() == pb.TensorProto_EXTERNAL {
		ref, _ := m.externalRef(t)
		b, err := readRange(ref)
		if err != nil {
			return nil, fmt.Errorf("tensor %q: %w", t.GetName(), err)
		}
		out.data = b
		return out, nil
	}
	if t.RawData != nil {
		out.data = t.RawData
		return out, nil
	}
	out.data = typedToRaw(t, dt, n)
	return out, nil
}

// resolveFS resolves loc inside dir of fsys by the rule resolveLocal
// applies to paths (a local path: not absolute, no ".." that leaves dir);
// names of an fs.FS are slash-separated and cannot leave it. Where fsys
// tells symbolic links (Lstat and ReadLink, as fs.ReadLinkFS has them),
// every link on the way is followed and must stay inside dir too.
func resolveFS(fsys fs.FS, dir, loc string) (string, error) {
	if strings.ContainsRune(loc, 0) || !filepath.IsLocal(filepath.FromSlash(loc)) || path.IsAbs(loc) {
		return "", fmt.Errorf("%w: %q", ErrExternalPath, loc)
	}
	p := path.Join(dir, filepath.ToSlash(loc))
	if !fs.ValidPath(p) {
		return "", fmt.Errorf("%w: %q", ErrExternalPath, loc)
	}
	lf, ok := fsys.(linkFS)
	if !ok {
		return p, nil
	}
	inside := func(q string) bool {
		return fs.ValidPath(q) && (dir == "." || q == dir || strings.HasPrefix(q, dir+"/"))
	}
	// p = dir/rest; resolve rest one element at a time, restarting after
	// each link (at most 40, as a kernel allows)
	for hops := 0; ; {
		rest := strings.TrimPrefix(strings.TrimPrefix(p, dir), "/")
		if dir == "." {
			rest = p
		}
		cur := dir
		relinked := false
		elems := strings.Split(rest, "/")
		for i, e := range elems {
			next := path.Join(cur, e)
			st, err := lf.Lstat(next)
			if err != nil {
				return p, nil // missing: the caller's Stat reports it
			}
			if st.Mode()&fs.ModeSymlink == 0 {
				cur = next
				continue
			}
			if hops++; hops > 40 {
				return "", fmt.Errorf("%w: %q: too many symbolic links", ErrExternalPath, loc)
			}
			target, err := lf.ReadLink(next)
			if err != nil {
				return "", fmt.Errorf("%w: external data %q: %v", ErrFormat, loc, err)
			}
			q := path.Join(append([]string{cur, target}, elems[i+1:]...)...)
			if path.IsAbs(target) || !inside(q) {
				return "", fmt.Errorf("%w: %q resolves to %s", ErrExternalPath, loc, path.Join(cur, target))
			}
			p, relinked = q, true
			break
		}
		if !relinked {
			return p, nil
		}
	}
}

// linkFS is the part of fs.ReadLinkFS that resolveFS uses.
type linkFS interface {
	ReadLink(name string) (string, error)
	Lstat(name string) (fs.FileInfo, error)
}

// open opens ref's file (a regular file only) and returns a reader of
// exactly its range's bytes, or fewer when the file is shorter than it
// said; the caller closes the closer.
func (ref extRef) open() (*io.LimitedReader, io.Closer, error) {
	if ref.file != nil {
		// the spill file stays open for the model: nothing to close
		return &io.LimitedReader{R: io.NewSectionReader(ref.file, ref.offset, ref.length), N: ref.length}, io.NopCloser(nil), nil
	}
	if ref.fsys == nil {
		f, _, err := safefile.Open(ref.path)
		if err != nil {
			return nil, nil, err
		}
		if _, err := f.Seek(ref.offset, io.SeekStart); err != nil {
			f.Close()
			return nil, nil, err
		}
		return &io.LimitedReader{R: f, N: ref.length}, f, nil
	}
	f, err := ref.fsys.Open(ref.path)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: external data: %v", ErrFormat, err)
	}
	st, err := f.Stat()
	if err == nil && !st.Mode().IsRegular() {
		err = fmt.Errorf("%s: %w", ref.path, ErrNotRegular)
	}
	if err == nil {
		if sk, ok := f.(io.Seeker); ok {
			_, err = sk.Seek(ref.offset, io.SeekStart)
		} else {
			_, err = io.CopyN(io.Discard, f, ref.offset)
		}
	}
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("%w: external data: %w", ErrFormat, err)
	}
	return &io.LimitedReader{R: f, N: ref.length}, f, nil
}

func readRange(ref extRef) ([]byte, error) {
	r, c, err := ref.open()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	b := make([]byte, ref.length)
	if _, err := io.ReadFull(r, b); err != nil && !(err == io.EOF && ref.length == 0) {
		return nil, fmt.Errorf("%w: reading external data: %v", ErrFormat, err)
	}
	return b, nil
}

// typedToRaw converts typed fields to little-endian raw bytes.
func typedToRaw(t *pb.TensorProto, dt DType, n int64) []byte {
	raw := make([]byte, dt.ByteSize(n))
	switch dt {
	case Float, Complex64:
		for i, v := range t.FloatData {
			binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
		}
	case Double, Complex128:
		for i, v := range t.DoubleData {
			binary.LittleEndian.PutUint64(raw[8*i:], math.Float64bits(v))
		}
	case Int64:
		for i, v := range t.Int64Data {
			binary.LittleEndian.PutUint64(raw[8*i:], uint64(v))
		}
	case Uint32:
		for i, v := range t.Uint64Data {
			binary.LittleEndian.PutUint32(raw[4*i:], uint32(v))
		}
	case Uint64:
		for i, v := range t.Uint64Data {
			binary.LittleEndian.PutUint64(raw[8*i:], v)
		}
	default:
		switch dt.Bits() {
		case 2, 4:
			// each int32 holds one packed byte (two 4-bit or four 2-bit values)
			for i, v := range t.Int32Data {
				raw[i] = uint8(v)
			}
		case 6:
			for i, v := range t.Int32Data {
				putPacked(raw, i, 6, uint8(v))
			}
		case 8:
			for i, v := range t.Int32Data {
				raw[i] = uint8(v)
			}
		case 16:
			for i, v := range t.Int32Data {
				binary.LittleEndian.PutUint16(raw[2*i:], uint16(v))
			}
		case 32:
			for i, v := range t.Int32Data {
				binary.LittleEndian.PutUint32(raw[4*i:], uint32(v))
			}
		}
	}
	return raw
}

// ParseTensor decodes a serialized TensorProto (such as the input_*.pb files
// of ONNX test-data folders). External data is refused.
func ParseTensor(b []byte) (*Tensor, error) {
	t := &pb.TensorProto{}
	if err := proto.Unmarshal(b, t); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	m := &Model{limits: DefaultLimits}
	return m.tensorFromProto(t)
}

// MarshalTensor serializes t as a TensorProto with raw_data (strings in
// string_data).
func MarshalTensor(t *Tensor) ([]byte, error) {
	return proto.MarshalOptions{Deterministic: true}.Marshal(tensorProto(t))
}

// tensorProto builds a TensorProto holding t inline.
func tensorProto(t *Tensor) *pb.TensorProto {
	p := &pb.TensorProto{
		Name:     proto.String(t.Name),
		DataType: proto.Int32(int32(t.DType)),
		Dims:     append([]int64{}, t.Shape...),
	}
	if t.DType == String {
		p.StringData = t.Strings
	} else {
		p.RawData = t.data
		if p.RawData == nil {
			p.RawData = []byte{}
		}
	}
	return p
}

// Initializers returns the names of the main graph's initializers in order.
func (m *Model) Initializers() []string {
	out := make([]string, 0, len(m.p.GetGraph().GetInitializer()))
	for _, t := range m.p.GetGraph().GetInitializer() {
		out = append(out, t.GetName())
	}
	return out
}

// HasInitializer reports whether the main graph has an initializer name.
func (m *Model) HasInitializer(name string) bool {
	_, ok := m.index[name]
	return ok
}

// InitializerInfo returns an initializer's dtype and shape without reading
// its data.
func (m *Model) InitializerInfo(name string) (DType, []int64, error) {
	i, ok := m.index[name]
	if !ok {
		return 0, nil, fmt.Errorf("%w: initializer %q", ErrNotFound, name)
	}
	t := m.p.Graph.Initializer[i]
	return DType(t.GetDataType()), append([]int64{}, t.Dims...), nil
}

// IsExternal reports whether an initializer's data is in an external file.
func (m *Model) IsExternal(name string) bool {
	i, ok := m.index[name]
	return ok && m.p.Graph.Initializer[i].GetDataLocation() == pb.TensorProto_EXTERNAL
}

// Initializer returns the named initializer of the main graph, reading
// external data if needed.
func (m *Model) Initializer(name string) (*Tensor, error) {
	i, ok := m.index[name]
	if !ok {
		return nil, fmt.Errorf("%w: initializer %q", ErrNotFound, name)
	}
	return m.tensorFromProto(m.p.Graph.Initializer[i])
}

// OwnedInitializer returns the named initializer as Initializer does, with
// bytes that are the caller's own to modify and keep: external data are
// read into a new buffer (as Initializer reads them), data held in the
// model are copied. A caller that updates a weight in place and hands the
// bytes back with NewTensor and SetInitializer holds one copy of it.
func (m *Model) OwnedInitializer(name string) (*Tensor, error) {
	t, err := m.Initializer(name)
	if err != nil || m.IsExternal(name) {
		return t, err
	}
	if t.data != nil {
		t.data = append([]byte(nil), t.data...)
	}
	return t, nil
}

// SetInitializer replaces the initializer named t.Name (keeping its
// position, doc string and metadata) or appends it when absent.
func (m *Model) SetInitializer(t *Tensor) error {
	if t.DType != String {
		if _, err := NewTensor(t.Name, t.DType, t.Shape, t.data); err != nil {
			return err
		}
	}
	p, err := m.spillTensor(t)
	if err != nil {
		return err
	}
	if p == nil {
		p = tensorProto(t)
	}
	if i, ok := m.index[t.Name]; ok {
		old := m.p.Graph.Initializer[i]
		delete(m.spilled, old)
		p.DocString = old.DocString
		p.MetadataProps = old.MetadataProps
		m.p.Graph.Initializer[i] = p
		return nil
	}
	m.p.Graph.Initializer = append(m.p.Graph.Initializer, p)
	m.index[t.Name] = len(m.p.Graph.Initializer) - 1
	return nil
}

// RemoveInitializer deletes an initializer (not its uses).
func (m *Model) RemoveInitializer(name string) error {
	i, ok := m.index[name]
	if !ok {
		return fmt.Errorf("%w: initializer %q", ErrNotFound, name)
	}
	g := m.p.Graph
	delete(m.spilled, g.Initializer[i])
	g.Initializer = append(g.Initializer[:i], g.Initializer[i+1:]...)
	m.reindex()
	return nil
}

// ExternalFiles returns the external data files that the main graph's
// initializers reference: their locations as written in the model and their
// resolved paths (inside the model's folder; names in the fs.FS for a model
// from LoadFS), sorted by location.
func (m *Model) ExternalFiles() (locations, paths []string, err error) {
	seen := map[string]bool{}
	for _, t := range m.p.GetGraph().GetInitializer() {
		if t.GetDataLocation() != pb.TensorProto_EXTERNAL {
			continue
		}
		if _, ok := m.spilledRef(t); ok {
			continue // the spill file is no file of the model
		}
		ref, err := m.externalRef(t)
		if err != nil {
			return nil, nil, fmt.Errorf("initializer %q: %w", t.GetName(), err)
		}
		for _, kv := range t.ExternalData {
			if kv.GetKey() == "location" && !seen[kv.GetValue()] {
				seen[kv.GetValue()] = true
				locations = append(locations, kv.GetValue())
				paths = append(paths, ref.path)
			}
		}
	}
	idx := make([]int, len(locations))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return locations[idx[a]] < locations[idx[b]] })
	ls, ps := make([]string, len(idx)), make([]string, len(idx))
	for k, i := range idx {
		ls[k], ps[k] = locations[i], paths[i]
	}
	return ls, ps, nil
}

// Metadata returns the model's metadata_props as a map.
func (m *Model) Metadata() map[string]string {
	out := map[string]string{}
	for _, kv := range m.p.MetadataProps {
		out[kv.GetKey()] = kv.GetValue()
	}
	return out
}

// SetMetadata sets (or adds) a metadata_props entry, e.g. provenance.
func (m *Model) SetMetadata(key, value string) {
	for i, kv := range m.p.MetadataProps {
		if kv.GetKey() == key {
			c := shallowClone(kv) // kv may be shared with a derived model
			c.Value = proto.String(value)
			m.p.MetadataProps[i] = c
			return
		}
	}
	m.p.MetadataProps = append(m.p.MetadataProps, &pb.StringStringEntryProto{Key: proto.String(key), Value: proto.String(value)})
}

// IRVersion returns the model's IR version.
func (m *Model) IRVersion() int64 { return m.p.GetIrVersion() }

// SetIRVersion sets the model's IR version.
func (m *Model) SetIRVersion(v int64) { m.p.IrVersion = proto.Int64(v) }

// ProducerName returns the producer recorded in the model.
func (m *Model) ProducerName() string { return m.p.GetProducerName() }

// Opsets returns the imported opsets by domain ("" is ai.onnx).
func (m *Model) Opsets() map[string]int64 {
	out := map[string]int64{}
	for _, o := range m.p.OpsetImport {
		d := o.GetDomain()
		if d == "ai.onnx" {
			d = ""
		}
		out[d] = o.GetVersion()
	}
	return out
}

// SetOpset imports domain at version (replacing an existing import).
func (m *Model) SetOpset(domain string, version int64) {
	for i, o := range m.p.OpsetImport {
		d := o.GetDomain()
		if d == domain || (domain == "" && d == "ai.onnx") {
			c := shallowClone(o) // o may be shared with a derived model
			c.Version = proto.Int64(version)
			m.p.OpsetImport[i] = c
			return
		}
	}
	m.p.OpsetImport = append(m.p.OpsetImport, &pb.OperatorSetIdProto{Domain: proto.String(domain), Version: proto.Int64(version)})
}
