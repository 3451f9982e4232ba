package onnxio

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

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

// writebackChunk is how much written external data Save lets accumulate
// before it starts the disk writes of it (startWriteback), overlapping the
// disk with the rest of the save.
const writebackChunk = 16 << 20

// TransformFunc computes the tensor to write for initializer name at save
// time; t is the current tensor. It returns t itself or a replacement with
// the same name. Save calls it concurrently for different names.
type TransformFunc func(name string, t *Tensor) (*Tensor, error)

// SaveOptions configures Save.
type SaveOptions struct {
	// External chooses inline or external data (default ExternalAuto).
	External ExternalMode
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
	// MapInputs, with a Transform, hands it the external tensors as
	// read-only windows of memory maps (see Mapped) instead of copies: the
	// tensor t given to Transform is valid only until its result has been
	// written, must not be written to, and must not be kept. Its pages leave
	// the resident set once written, so a streaming transform over a large
	// model neither copies the tensors it does not read nor keeps those it
	// does.
	MapInputs bool
	// Written, if set, is called by the writer with each tensor returned
	// by Transform once its bytes have been copied to the external data
	// file, never for a tensor kept inline in the model: the callee may
	// then reuse the tensor's buffer.
	Written func(t *Tensor)
	// Context, if set, cancels the save: it is checked between tensors and
	// before the commit; a cancelled save removes its temporary files and
	// leaves an existing output untouched (nil: never cancelled).
	Context context.Context
	// Finish, if set, is called once every tensor has been written and
	// before the model itself is serialized: it may still change the
	// model's metadata (e.g. record digests of the inputs that were being
	// computed while the data was written). An error fails the save.
	Finish func(m *Model) error
}

// Save writes the model to path so that no crash, kill or failure can
// leave a model that reads another save's data, and a failed or cancelled
// save changes nothing:
//
//   - path is checked first: "" and an existing folder or special file are
//     refused before anything is written;
//   - external data goes to a file named after this save alone,
//     "<base>.<16 hex digits>.data" beside the output (base is path's base
//     name), written and fsynced under a temporary name, then renamed;
//   - the model is written and fsynced under a temporary name, then renamed
//     over path: that rename is the single commit point;
//   - only after the commit, the data files that the replaced model
//     referenced are removed, and only those named like a save's data file
//     for this base name ("<base>.<16 hex>.data"); hand-made data files
//     (model.onnx.data, weights.bin) are never removed. On Linux the
//     replaced model is obtained atomically (renameat2 RENAME_EXCHANGE),
//     so with concurrent saves to one path each replaced model is cleaned
//     up by exactly one saver and the data of the model left in place is
//     never removed.
//
// A crash leaves at most hidden ".onnxpost-*" temporary files and, between
// the data's rename and the commit, an unreferenced data file. After a save
// over the file the model was loaded from, the old data file is gone: load
// the output again to read its tensors. The model itself is not changed.
func (m *Model) Save(path string, opts *SaveOptions) error {
	_, err := m.SaveFile(path, opts)
	return err
}

// Saved is what a save wrote: the model file and, when tensors went to
// external data, the data file beside it.
type Saved struct {
	// Path is the model file written.
	Path string
	// ModelBytes is the size of the model file.
	ModelBytes int64
	// DataFile is the external data file's name as the model references
	// it ("<base>.<16 hex digits>.data"), "" when every tensor is inline.
	DataFile string
	// DataBytes is the size of the data file (0 without one).
	DataBytes int64
}

// DataPath returns the data file's path, "" without one.
func (s Saved) DataPath() string {
	if s.DataFile == "" {
		return ""
	}
	return filepath.Join(filepath.Dir(s.Path), s.DataFile)
}

// Bytes returns the bytes written: the model file and its data file.
func (s Saved) Bytes() int64 { return s.ModelBytes + s.DataBytes }

// SaveFile is Save returning what it wrote (nothing on error).
func (m *Model) SaveFile(path string, opts *SaveOptions) (Saved, error) {
	var w Saved
	if err := m.save(path, opts, &w); err != nil {
		return Saved{}, err
	}
	return w, nil
}

func (m *Model) save(path string, opts *SaveOptions, written *Saved) (err error) {
	var o SaveOptions
	if opts != nil {
		o = *opts
	}
	if err := checkOutput(path); err != nil {
		return err
	}
	ctx := o.Context
	if ctx == nil {
		ctx = context.Background()
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
		if m.TensorBytes() > inlineLimit || m.hasExternal() {
			o.External = ExternalAlways
		} else {
			o.External = ExternalNever
		}
	}
	dir, base := filepath.Dir(path), filepath.Base(path)
	// Everything created before the commit is removed on any error.
	var temps []string
	defer func() {
		if err != nil {
			for _, t := range temps {
				os.Remove(t)
			}
		}
	}()
	if err := ctx.Err(); err != nil {
		return err
	}

	dataName := ""
	orig := m.p.GetGraph().GetInitializer()
	out := make([]*pb.TensorProto, len(orig))
	var dataTmp *os.File
	defer func() {
		if dataTmp != nil {
			dataTmp.Close()
		}
	}()
	if o.External == ExternalAlways {
		if dataName, err = newDataName(base); err != nil {
			return err
		}
		f, err := os.CreateTemp(dir, ".onnxpost-data-*")
		if err != nil {
			return err
		}
		dataTmp = f
		temps = append(temps, f.Name())
	}
	var dw *dataWriter
	if dataTmp != nil {
		dw = newDataWriter(dataTmp)
	}
	var offset int64
	externals := 0
	err = m.forEachOrdered(orig, o, func(i int, src *pb.TensorProto, t *Tensor) error {
		if err := ctx.Err(); err != nil {
			return err
		}
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
			if _, err := dw.Write(make([]byte, pad)); err != nil {
				return err
			}
			offset += pad
		}
		if t == nil && src.GetDataLocation() == pb.TensorProto_EXTERNAL {
			ref, err := m.externalRef(src)
			if err != nil {
				return err
			}
			if err := copyRange(dw, ref); err != nil {
				return fmt.Errorf("tensor %q: %w", src.GetName(), err)
			}
		} else {
			if t == nil {
				var err error
				if t, err = m.tensorFromProto(src); err != nil {
					return err
				}
			}
			if _, err := dw.Write(t.data); err != nil {
				return err
			}
			if !unchanged && o.Written != nil {
				o.Written(t)
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
				{Key: proto.String("location"), Value: proto.String(dataName)},
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
		return err
	}
	if o.External != ExternalAlways {
		// inline: also bring external tensors in
		for i, p := range out {
			if p.GetDataLocation() == pb.TensorProto_EXTERNAL {
				if err := ctx.Err(); err != nil {
					return err
				}
				t, err := m.tensorFromProto(p)
				if err != nil {
					return err
				}
				np := tensorProto(t)
				np.DocString, np.MetadataProps = p.DocString, p.MetadataProps
				keepExtras(np, p)
				out[i] = np
			}
		}
	}
	if o.Finish != nil {
		if err := o.Finish(m); err != nil {
			return err
		}
	}
	b, err := m.marshalWith(out)
	if err != nil {
		return err
	}
	if int64(len(b)) > DefaultLimits.MaxModelBytes {
		return fmt.Errorf("%w: the serialized model is %d bytes, over protobuf's 2 GB limit: save with external data", ErrLimit, len(b))
	}
	if dataTmp != nil {
		err := dw.Close()
		if cerr := dataTmp.Close(); err == nil {
			err = cerr
		}
		name := dataTmp.Name()
		dataTmp = nil
		if err != nil {
			return err
		}
		if externals == 0 {
			// nothing reached the threshold: no data file
			os.Remove(name)
		} else {
			if err := finishData(name, filepath.Join(dir, dataName)); err != nil {
				return err
			}
			temps = append(temps, filepath.Join(dir, dataName))
		}
	}
	modelTmp, err := writeTemp(dir, b)
	if err != nil {
		return err
	}
	temps = append(temps, modelTmp)
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := commit(modelTmp, path, dataName); err != nil {
		return err
	}
	*written = Saved{Path: path, ModelBytes: int64(len(b))}
	if externals > 0 {
		written.DataFile, written.DataBytes = dataName, offset
	}
	return nil
}

// checkOutput refuses an output path that cannot hold a model file: empty,
// an existing folder or special file, or a path ending in a separator.
func checkOutput(path string) error {
	if path == "" {
		return fmt.Errorf("%w: the output path is empty", ErrOutputPath)
	}
	if os.IsPathSeparator(path[len(path)-1]) {
		return fmt.Errorf("%w: %s names a folder, not a file", ErrOutputPath, path)
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil // absent (or unreadable: creating the temporary file says why)
	}
	if st.IsDir() {
		return fmt.Errorf("%w: %s is a folder", ErrOutputPath, path)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%w: %s exists and is not a regular file", ErrOutputPath, path)
	}
	return nil
}

// newDataName returns a data-file name for output base name base that no
// other save uses: "<base>.<16 hex digits>.data".
func newDataName(base string) (string, error) {
	var r [8]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", err
	}
	return base + "." + hex.EncodeToString(r[:]) + ".data", nil
}

// isSaveData reports whether loc is the name Save gives the data file of an
// output named base (see newDataName).
func isSaveData(base, loc string) bool {
	tok, ok := strings.CutPrefix(loc, base+".")
	if !ok {
		return false
	}
	tok, ok = strings.CutSuffix(tok, ".data")
	if !ok || len(tok) != 16 {
		return false
	}
	for _, c := range tok {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// finishData makes the written data file durable and gives it its name.
func finishData(tmp, path string) error {
	f, err := os.OpenFile(tmp, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	err = f.Chmod(0o644)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	return err
}

// commit puts the written model (tmp) at path, then removes the data files
// of the model it replaced that are named like this output's save data
// (never keep, the new model's own). Errors after the rename are not
// reported: the new model is in place and complete.
func commit(tmp, path, keep string) error {
	dir, base := filepath.Dir(path), filepath.Base(path)
	var old []string
	swapped, ok, err := swapInto(tmp, path)
	if err != nil {
		return err
	}
	switch {
	case swapped:
		// the replaced model is now at tmp
		old, _ = DataFiles(tmp)
		os.Remove(tmp)
	case !ok:
		// no atomic exchange: read what the current output references,
		// then rename over it. A concurrent save may replace the output in
		// between; then its data files may stay behind, but the data of
		// the model left in place is never among those removed (each
		// removed file belongs to a model that this rename displaced or
		// that was displaced before it).
		old, _ = DataFiles(path)
		if err := os.Rename(tmp, path); err != nil {
			return err
		}
	}
	syncDir(dir)
	removed := false
	for _, loc := range old {
		if loc != keep && isSaveData(base, loc) {
			if os.Remove(filepath.Join(dir, loc)) == nil {
				removed = true
			}
		}
	}
	if removed {
		syncDir(dir)
	}
	return nil
}

// syncDir fsyncs a folder so that renames in it are durable.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// marshalWith serializes the model with its main graph's initializers
// replaced by inits (and nested external tensors inline), without changing
// the model, so concurrent readers are safe.
func (m *Model) marshalWith(inits []*pb.TensorProto) ([]byte, error) {
	mp := &pb.ModelProto{}
	shallowCopy(mp, m.p)
	if m.p.Graph != nil {
		g := &pb.GraphProto{}
		shallowCopy(g, m.p.Graph)
		g.Initializer = inits
		mp.Graph = g
	}
	mp, err := m.withInlineNested(mp)
	if err != nil {
		return nil, err
	}
	return proto.MarshalOptions{Deterministic: true}.Marshal(mp)
}

// shallowCopy sets every populated field of dst to src's value (messages
// and lists shared, not copied) and copies unknown fields.
func shallowCopy(dst, src proto.Message) {
	d, s := dst.ProtoReflect(), src.ProtoReflect()
	s.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		d.Set(fd, v)
		return true
	})
	if u := s.GetUnknown(); len(u) > 0 {
		d.SetUnknown(append(protoreflect.RawFields(nil), u...))
	}
}

// lookaheadBytes bounds the bytes of the tensors a transforming save has
// computed ahead of its writer; lookaheadUnit is the unit it is counted in
// (a tensor costs its size in units, rounded up, at least one and at most
// all of them, so that one larger than the bound still runs, alone).
const (
	lookaheadBytes = 192 << 20
	lookaheadUnit  = 1 << 20
)

// lookaheadCost returns the units of look-ahead tensor src takes, from its
// declared shape and type (a shape that does not fit counts as the whole
// bound).
func lookaheadCost(src *pb.TensorProto, units int) int {
	n, err := NumElements(src.GetDims())
	if err != nil {
		return units
	}
	b := DType(src.GetDataType()).ByteSize(n)
	if b <= 0 {
		return 1
	}
	return int(min(int64(units), max(1, (b+lookaheadUnit-1)/lookaheadUnit)))
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
		in, t *Tensor
		err   error
	}
	var view *Mapped
	if o.MapInputs {
		view = m.Mapped()
		defer view.Close() // after wg.Wait below: no reader is left
	}
	read := func(src *pb.TensorProto) (*Tensor, error) {
		if k, ok := m.index[src.GetName()]; view != nil && ok && m.p.Graph.Initializer[k] == src {
			return view.Initializer(src.GetName())
		}
		return m.tensorFromProto(src)
	}
	results := make([]chan result, len(ts))
	for i := range results {
		results[i] = make(chan result, 1)
	}
	// sem bounds the transforms running at once; ahead bounds the tensors
	// computed but not yet written, in units of lookaheadUnit bytes, so
	// that a worker done early starts the next tensor while a larger one
	// before it is still computed or written (a slot per tensor until
	// written would idle it), with memory bounded by lookaheadBytes.
	sem := make(chan struct{}, o.Workers)
	ahead := make(chan struct{}, lookaheadBytes/lookaheadUnit)
	cost := make([]int, len(ts))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1) // the producer itself, so the count never drops to zero while it adds
	go func() {
		defer wg.Done()
		for i, src := range ts {
			cost[i] = lookaheadCost(src, cap(ahead))
			for range cost[i] {
				select {
				case ahead <- struct{}{}:
				case <-stop:
					return
				}
			}
			select {
			case sem <- struct{}{}:
			case <-stop:
				return
			}
			wg.Add(1)
			go func(i int, src *pb.TensorProto) {
				defer wg.Done()
				in, err := read(src)
				var t *Tensor
				if err == nil {
					t, err = o.Transform(src.GetName(), in)
					if err == nil && t != nil && t.Name != src.GetName() {
						err = fmt.Errorf("transform renamed %q to %q", src.GetName(), t.Name)
					}
				}
				<-sem
				results[i] <- result{in, t, err} // buffered: never blocks
			}(i, src)
		}
	}()
	var firstErr error
	for i, src := range ts {
		r := <-results[i]
		if r.err != nil {
			firstErr = fmt.Errorf("tensor %q: %w", src.GetName(), r.err)
			close(stop) // the producer stops; started workers finish
			break
		}
		if view != nil && r.t != nil && len(r.t.data) > 0 && view.owner(uintptr(unsafe.Pointer(&r.t.data[0]))) != "" &&
			(o.External != ExternalAlways || int64(len(r.t.data)) < o.Threshold) {
			r.t = r.t.Clone() // kept inline in the model: must outlive the map
		}
		err := fn(i, src, r.t)
		if view != nil {
			view.Release(r.in)
			view.Release(r.t)
		}
		if err != nil {
			firstErr = err
			close(stop)
			break
		}
		for range cost[i] {
			<-ahead
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
func copyRange(dst io.Writer, ref extRef) error {
	r, c, err := ref.open()
	if err != nil {
		return err
	}
	defer c.Close()
	n, err := io.Copy(dst, r)
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

// TensorBytes returns the size of the main graph's initializers' data,
// inline, external or spilled.
func (m *Model) TensorBytes() int64 {
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
// in), e.g. to create an ONNX Runtime session from memory. The model is not
// changed (concurrent reads are safe).
func (m *Model) Bytes() ([]byte, error) {
	orig := m.p.GetGraph().GetInitializer()
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
	b, err := m.marshalWith(out)
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
	if len(b) >= directMin {
		w := newDataWriter(f)
		_, err = w.Write(b)
		if cerr := w.Close(); err == nil {
			err = cerr
		}
	} else {
		_, err = f.Write(b)
	}
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
	syncDir(filepath.Dir(path))
	return nil
}
