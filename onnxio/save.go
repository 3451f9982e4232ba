package onnxio

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"

	"google.golang.org/protobuf/proto"

	pb "github.com/onnxpost/onnxpost/onnxio/internal/onnxpb"
)

// ExternalMode chooses where Save puts tensor data.
type ExternalMode int

const (
	// ExternalAuto writes external data when the model would pass
	// protobuf's 2 GB limit or already keeps initializers in external data
	// (so that a large model is streamed file to file, never held in
	// memory); otherwise it writes every tensor inline.
	ExternalAuto ExternalMode = iota
	// ExternalNever writes every tensor inline.
	ExternalNever
	// ExternalAlways writes tensors of at least Threshold bytes to the
	// external data file.
	ExternalAlways
)

// inlineLimit is the size beyond which ExternalAuto switches to external
// data (protobuf's limit is 2 GiB; keep a margin for the graph itself).
const inlineLimit = 1900 << 20

// TransformFunc computes the tensor to write for initializer name at save
// time; t is the current tensor. It returns t itself or a replacement with
// the same name. Save calls it concurrently for different names.
type TransformFunc func(name string, t *Tensor) (*Tensor, error)

// SaveOptions configures Save.
type SaveOptions struct {
	// External chooses inline or external data (default ExternalAuto).
	External ExternalMode
	// DataFile is the external data file name, relative to the output's
	// folder (default: the output's base name + ".data").
	DataFile string
	// Threshold is the smallest tensor (bytes) stored externally
	// (default 1024).
	Threshold int64
	// Align is the alignment of external offsets (default 4096).
	Align int64
	// Transform, if set, is applied to every initializer as it is written,
	// so a transformation can stream over a large model without holding it.
	Transform TransformFunc
	// Workers bounds concurrent Transform calls (default GOMAXPROCS).
	Workers int
}

// Save writes the model to path atomically: data goes to temporary files in
// the output folder that are fsynced and renamed into place, so a failure
// leaves any existing output untouched. The model itself is not changed.
func (m *Model) Save(path string, opts *SaveOptions) error {
	var o SaveOptions
	if opts != nil {
		o = *opts
	}
	if o.Threshold == 0 {
		o.Threshold = 1024
	}
	if o.Align <= 0 {
		o.Align = 4096
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.External == ExternalAuto {
		if m.dataBytes() > inlineLimit || m.hasExternal() {
			o.External = ExternalAlways
		} else {
			o.External = ExternalNever
		}
	}
	dir := filepath.Dir(path)
	if o.DataFile == "" {
		o.DataFile = filepath.Base(path) + ".data"
	}
	if o.External == ExternalAlways && !filepath.IsLocal(o.DataFile) {
		return fmt.Errorf("%w: data file %q", ErrExternalPath, o.DataFile)
	}

	g := m.p.Graph
	orig := g.Initializer
	out := make([]*pb.TensorProto, len(orig))
	var dataTmp *os.File
	cleanup := func() {
		if dataTmp != nil {
			dataTmp.Close()
			os.Remove(dataTmp.Name())
		}
	}
	if o.External == ExternalAlways {
		f, err := os.CreateTemp(dir, ".onnxpost-data-*")
		if err != nil {
			return err
		}
		dataTmp = f
	}
	var offset int64
	externals := 0
	err := m.forEachOrdered(orig, o, func(i int, src *pb.TensorProto, t *Tensor) error {
		if o.External != ExternalAlways {
			if t == nil {
				out[i] = src // unchanged, inline stays inline byte for byte
				return nil
			}
			p := tensorProto(t)
			p.DocString, p.MetadataProps = src.DocString, src.MetadataProps
			out[i] = p
			return nil
		}
		unchanged := t == nil
		var size int64
		if t != nil {
			size = int64(len(t.data))
		} else {
			n, err := m.checkTensor(src)
			if err != nil {
				return fmt.Errorf("tensor %q: %w", src.GetName(), err)
			}
			size = DType(src.GetDataType()).ByteSize(n)
		}
		if size < o.Threshold || DType(src.GetDataType()) == String {
			if t == nil && src.GetDataLocation() != pb.TensorProto_EXTERNAL {
				out[i] = src
				return nil
			}
			if unchanged {
				var err error
				if t, err = m.tensorFromProto(src); err != nil {
					return err
				}
			}
			p := tensorProto(t)
			p.DocString, p.MetadataProps = src.DocString, src.MetadataProps
			if unchanged {
				keepExtras(p, src)
			}
			out[i] = p
			return nil
		}
		if pad := (o.Align - offset%o.Align) % o.Align; pad > 0 {
			if _, err := dataTmp.Write(make([]byte, pad)); err != nil {
				return err
			}
			offset += pad
		}
		if t == nil && src.GetDataLocation() == pb.TensorProto_EXTERNAL {
			ref, err := m.externalRef(src)
			if err != nil {
				return err
			}
			if err := copyRange(dataTmp, ref); err != nil {
				return fmt.Errorf("tensor %q: %w", src.GetName(), err)
			}
		} else {
			if t == nil {
				var err error
				if t, err = m.tensorFromProto(src); err != nil {
					return err
				}
			}
			if _, err := dataTmp.Write(t.data); err != nil {
				return err
			}
		}
		p := &pb.TensorProto{
			Name:          src.Name,
			DataType:      src.DataType,
			Dims:          src.Dims,
			DocString:     src.DocString,
			MetadataProps: src.MetadataProps,
			DataLocation:  pb.TensorProto_EXTERNAL.Enum(),
			ExternalData: []*pb.StringStringEntryProto{
				{Key: proto.String("location"), Value: proto.String(filepath.ToSlash(o.DataFile))},
				{Key: proto.String("offset"), Value: proto.String(strconv.FormatInt(offset, 10))},
				{Key: proto.String("length"), Value: proto.String(strconv.FormatInt(size, 10))},
			},
		}
		if unchanged {
			keepExtras(p, src) // an unchanged tensor keeps segment and unknown fields
		} else {
			p.DataType = proto.Int32(int32(t.DType))
			p.Dims = t.Shape
		}
		out[i] = p
		offset += size
		externals++
		return nil
	})
	if err != nil {
		cleanup()
		return err
	}
	if o.External != ExternalAlways {
		// inline: also bring external tensors in
		for i, p := range out {
			if p.GetDataLocation() == pb.TensorProto_EXTERNAL {
				t, err := m.tensorFromProto(p)
				if err != nil {
					cleanup()
					return err
				}
				np := tensorProto(t)
				np.DocString, np.MetadataProps = p.DocString, p.MetadataProps
				keepExtras(np, p)
				out[i] = np
			}
		}
	}
	g.Initializer = out
	mp, err := m.withInlineNested(m.p)
	var b []byte
	if err == nil {
		b, err = proto.MarshalOptions{Deterministic: true}.Marshal(mp)
	}
	g.Initializer = orig
	if err != nil {
		cleanup()
		return err
	}
	if int64(len(b)) > DefaultLimits.MaxModelBytes {
		cleanup()
		return fmt.Errorf("%w: the serialized model is %d bytes, over protobuf's 2 GB limit: save with external data", ErrLimit, len(b))
	}
	if dataTmp != nil && externals == 0 {
		// nothing reached the threshold: no data file
		cleanup()
		dataTmp = nil
	}
	// Both files are complete and synced before either is renamed, so a
	// failure leaves an existing output (model and data) untouched.
	modelTmp, err := writeTemp(dir, b)
	if err != nil {
		cleanup()
		return err
	}
	if dataTmp != nil {
		err := dataTmp.Chmod(0o644)
		if err == nil {
			err = dataTmp.Sync()
		}
		if cerr := dataTmp.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(dataTmp.Name(), filepath.Join(dir, filepath.FromSlash(o.DataFile)))
		}
		if err != nil {
			os.Remove(dataTmp.Name())
			os.Remove(modelTmp)
			return err
		}
		dataTmp = nil
	}
	return renameSync(modelTmp, path)
}

// forEachOrdered visits initializers in order. With a Transform, tensors are
// computed by a worker pool ahead of the writer (bounded look-ahead) and
// fn receives the transformed tensor; otherwise fn receives t == nil for
// unchanged tensors.
func (m *Model) forEachOrdered(ts []*pb.TensorProto, o SaveOptions, fn func(i int, src *pb.TensorProto, t *Tensor) error) error {
	if o.Transform == nil {
		for i, src := range ts {
			if err := fn(i, src, nil); err != nil {
				return err
			}
		}
		return nil
	}
	type result struct {
		t   *Tensor
		err error
	}
	results := make([]chan result, len(ts))
	for i := range results {
		results[i] = make(chan result, 1)
	}
	sem := make(chan struct{}, o.Workers)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1) // the producer itself, so the count never drops to zero while it adds
	go func() {
		defer wg.Done()
		for i, src := range ts {
			select {
			case sem <- struct{}{}:
			case <-stop:
				return
			}
			wg.Add(1)
			go func(i int, src *pb.TensorProto) {
				defer wg.Done()
				t, err := m.tensorFromProto(src)
				if err == nil {
					var nt *Tensor
					nt, err = o.Transform(src.GetName(), t)
					if err == nil && nt != nil && nt.Name != src.GetName() {
						err = fmt.Errorf("transform renamed %q to %q", src.GetName(), nt.Name)
					}
					t = nt
				}
				results[i] <- result{t, err}
			}(i, src)
		}
	}()
	var firstErr error
	for i, src := range ts {
		r := <-results[i]
		<-sem
		if firstErr != nil {
			continue
		}
		if r.err != nil {
			firstErr = fmt.Errorf("tensor %q: %w", src.GetName(), r.err)
			close(stop)
			// drain the rest that were started
			for j := i + 1; j < len(ts); j++ {
				select {
				case <-results[j]:
					<-sem
				default:
				}
			}
			break
		}
		if err := fn(i, src, r.t); err != nil {
			firstErr = err
			close(stop)
			break
		}
	}
	wg.Wait()
	return firstErr
}

// withInlineNested returns p itself or, when a tensor other than the main
// graph's initializers (a node attribute such as a Constant's value, or a
// subgraph's initializer, at any depth) holds external data, a deep copy of
// p with those tensors inline. Save and Bytes move only the main graph's
// initializers; a nested reference left as it was would point into the
// input's folder and not resolve from the output's.
func (m *Model) withInlineNested(p *pb.ModelProto) (*pb.ModelProto, error) {
	if !hasNestedExternal(p.GetGraph(), true) {
		return p, nil
	}
	c := proto.Clone(p).(*pb.ModelProto)
	if err := m.inlineNested(c.Graph, true); err != nil {
		return nil, err
	}
	return c, nil
}

func isExternal(t *pb.TensorProto) bool {
	return t != nil && t.GetDataLocation() == pb.TensorProto_EXTERNAL
}

// hasNestedExternal reports whether g holds an external tensor in a node
// attribute or (for subgraphs, main false) among its initializers.
func hasNestedExternal(g *pb.GraphProto, main bool) bool {
	if g == nil {
		return false
	}
	if !main {
		for _, t := range g.Initializer {
			if isExternal(t) {
				return true
			}
		}
	}
	for _, n := range g.Node {
		for _, a := range n.Attribute {
			if isExternal(a.T) {
				return true
			}
			for _, t := range a.Tensors {
				if isExternal(t) {
					return true
				}
			}
			if hasNestedExternal(a.G, false) {
				return true
			}
			for _, sg := range a.Graphs {
				if hasNestedExternal(sg, false) {
					return true
				}
			}
		}
	}
	return false
}

// inlineNested replaces, in place, the external tensors that
// hasNestedExternal finds by inline copies.
func (m *Model) inlineNested(g *pb.GraphProto, main bool) error {
	if g == nil {
		return nil
	}
	inline := func(t *pb.TensorProto) (*pb.TensorProto, error) {
		if !isExternal(t) {
			return t, nil
		}
		tt, err := m.tensorFromProto(t)
		if err != nil {
			return nil, err
		}
		np := tensorProto(tt)
		np.Name = t.Name // keep an absent name absent
		np.DocString, np.MetadataProps = t.DocString, t.MetadataProps
		keepExtras(np, t)
		return np, nil
	}
	var err error
	if !main {
		for i := range g.Initializer {
			if g.Initializer[i], err = inline(g.Initializer[i]); err != nil {
				return err
			}
		}
	}
	for _, n := range g.Node {
		for _, a := range n.Attribute {
			if a.T != nil {
				if a.T, err = inline(a.T); err != nil {
					return err
				}
			}
			for i := range a.Tensors {
				if a.Tensors[i], err = inline(a.Tensors[i]); err != nil {
					return err
				}
			}
			if err := m.inlineNested(a.G, false); err != nil {
				return err
			}
			for _, sg := range a.Graphs {
				if err := m.inlineNested(sg, false); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// keepExtras copies the fields of src that a rewritten copy p of the same,
// unchanged tensor would otherwise lose: segment and unknown fields.
func keepExtras(p, src *pb.TensorProto) {
	p.Segment = src.Segment
	if u := src.ProtoReflect().GetUnknown(); len(u) > 0 {
		p.ProtoReflect().SetUnknown(u)
	}
}

// copyRange appends ref's bytes to dst, with copy_file_range where the
// kernel offers it.
func copyRange(dst *os.File, ref extRef) error {
	f, err := os.Open(ref.path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Seek(ref.offset, io.SeekStart); err != nil {
		return err
	}
	n, err := io.Copy(dst, io.LimitReader(f, ref.length))
	if err != nil {
		return err
	}
	if n != ref.length {
		return fmt.Errorf("%w: external data ended after %d of %d bytes", ErrFormat, n, ref.length)
	}
	return nil
}

// hasExternal reports whether a main-graph initializer is held in external
// data.
func (m *Model) hasExternal() bool {
	for _, t := range m.p.GetGraph().GetInitializer() {
		if isExternal(t) {
			return true
		}
	}
	return false
}

func (m *Model) dataBytes() int64 {
	var total int64
	for _, t := range m.p.GetGraph().GetInitializer() {
		n, err := NumElements(t.Dims)
		if err != nil {
			continue
		}
		if s := DType(t.GetDataType()).ByteSize(n); s > 0 {
			total += s
		}
	}
	return total
}

// Bytes serializes the model with every tensor inline (external data read
// in), e.g. to create an ONNX Runtime session from memory.
func (m *Model) Bytes() ([]byte, error) {
	g := m.p.Graph
	orig := g.Initializer
	out := make([]*pb.TensorProto, len(orig))
	for i, p := range orig {
		if p.GetDataLocation() != pb.TensorProto_EXTERNAL {
			out[i] = p
			continue
		}
		t, err := m.tensorFromProto(p)
		if err != nil {
			return nil, err
		}
		np := tensorProto(t)
		np.DocString, np.MetadataProps = p.DocString, p.MetadataProps
		keepExtras(np, p)
		out[i] = np
	}
	g.Initializer = out
	mp, err := m.withInlineNested(m.p)
	var b []byte
	if err == nil {
		b, err = proto.MarshalOptions{Deterministic: true}.Marshal(mp)
	}
	g.Initializer = orig
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > DefaultLimits.MaxModelBytes {
		return nil, fmt.Errorf("%w: the serialized model is %d bytes, over protobuf's 2 GB limit", ErrLimit, len(b))
	}
	return b, nil
}

// WriteFileAtomic writes b to path through a temporary file in the same
// folder that is fsynced and renamed over path.
func WriteFileAtomic(path string, b []byte) error {
	tmp, err := writeTemp(filepath.Dir(path), b)
	if err != nil {
		return err
	}
	return renameSync(tmp, path)
}

// writeTemp writes b to a new fsynced temporary file (mode 0644) in dir and
// returns its name; on error nothing is left behind.
func writeTemp(dir string, b []byte) (string, error) {
	f, err := os.CreateTemp(dir, ".onnxpost-*")
	if err != nil {
		return "", err
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o644)
	}
	if err != nil {
		os.Remove(tmp)
		return "", err
	}
	return tmp, nil
}

// renameSync renames tmp to path (removing tmp on failure) and syncs the
// folder.
func renameSync(tmp, path string) error {
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
