package onnxio

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	pb "github.com/onnxpost/onnxpost/onnxio/internal/onnxpb"
)

// hashFiles returns the SHA-256 of every regular file under dir.
func hashFiles(t *testing.T, dir string) map[string][32]byte {
	t.Helper()
	out := map[string][32]byte{}
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = sha256.Sum256(b)
	}
	return out
}

func sameHashes(t *testing.T, what string, a, b map[string][32]byte) {
	t.Helper()
	if len(a) != len(b) {
		t.Errorf("%s: %d files before, %d after", what, len(a), len(b))
	}
	for k, v := range a {
		if b[k] != v {
			t.Errorf("%s: %s changed", what, k)
		}
	}
}

// withUnknownFields returns the kitchen-sink model's bytes with unknown
// fields at the model level (appended to the bytes), in a node, in an
// initializer and in the graph.
func withUnknownFields(t testing.TB) []byte {
	t.Helper()
	m := kitchenSink(t, fixtureOpts{})
	p := proto.Clone(m.p).(*pb.ModelProto)
	unk := func(num protowire.Number, v string) []byte {
		b := protowire.AppendTag(nil, num, protowire.BytesType)
		return protowire.AppendString(b, v)
	}
	p.Graph.Node[0].ProtoReflect().SetUnknown(unk(9001, "node extension"))
	p.Graph.Initializer[0].ProtoReflect().SetUnknown(unk(9002, "tensor extension"))
	p.Graph.ProtoReflect().SetUnknown(unk(9003, "graph extension"))
	p.Graph.Initializer[1].Segment = &pb.TensorProto_Segment{Begin: proto.Int64(0), End: proto.Int64(16)}
	b := marshal(t, p)
	b = protowire.AppendTag(b, 9000, protowire.VarintType)
	return protowire.AppendVarint(b, 42)
}

func TestRoundTripUnknownFields(t *testing.T) {
	in := withUnknownFields(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "in.onnx")
	if err := os.WriteFile(src, in, 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := Load(src)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.p.ProtoReflect().GetUnknown()) == 0 {
		t.Fatal("Load dropped the model's unknown field")
	}
	out := filepath.Join(dir, "out.onnx")
	if err := m.Save(out, nil); err != nil {
		t.Fatal(err)
	}
	back, err := Load(out)
	if err != nil {
		t.Fatal(err)
	}
	if !m.Equal(back) {
		t.Fatal("Load → Save → Load is not proto.Equal")
	}
	orig := &pb.ModelProto{}
	if err := proto.Unmarshal(in, orig); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(orig, back.p) {
		t.Fatal("the saved model is not proto.Equal to the input bytes")
	}
	for _, u := range [][]byte{
		back.p.ProtoReflect().GetUnknown(),
		back.p.Graph.ProtoReflect().GetUnknown(),
		back.p.Graph.Node[0].ProtoReflect().GetUnknown(),
		back.p.Graph.Initializer[0].ProtoReflect().GetUnknown(),
	} {
		if len(u) == 0 {
			t.Error("an unknown field was lost")
		}
	}
	// through external data and back inline: still equal, unknown fields and
	// segment of unchanged tensors included
	ext := filepath.Join(dir, "ext.onnx")
	if err := m.Save(ext, &SaveOptions{External: ExternalAlways, Threshold: 1}); err != nil {
		t.Fatal(err)
	}
	em, err := Load(ext)
	if err != nil {
		t.Fatal(err)
	}
	if u := em.p.Graph.Initializer[0].ProtoReflect().GetUnknown(); len(u) == 0 {
		t.Error("external save dropped a tensor's unknown field")
	}
	inl := filepath.Join(dir, "inline.onnx")
	if err := em.Save(inl, &SaveOptions{External: ExternalNever}); err != nil {
		t.Fatal(err)
	}
	im, err := Load(inl)
	if err != nil {
		t.Fatal(err)
	}
	if !im.Equal(m) {
		t.Error("inline → external → inline is not proto.Equal to the input")
	}
	b, err := em.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	bm, err := LoadBytes(b, "")
	if err != nil {
		t.Fatal(err)
	}
	if !bm.Equal(m) {
		t.Error("Bytes of the external model is not proto.Equal to the input")
	}
}

func TestSaveExternalLayout(t *testing.T) {
	m := kitchenSink(t, fixtureOpts{hidden: 300}) // W1 is 8×300 float32 = 9600 bytes
	dir := t.TempDir()
	out := filepath.Join(dir, "m.onnx")
	if err := m.Save(out, &SaveOptions{External: ExternalAlways, Align: 4096}); err != nil {
		t.Fatal(err)
	}
	back, err := Load(out)
	if err != nil {
		t.Fatal(err)
	}
	ext := 0
	for _, p := range back.p.Graph.Initializer {
		n, _ := NumElements(p.Dims)
		size := DType(p.GetDataType()).ByteSize(n)
		if (size >= 1024) != (p.GetDataLocation() == pb.TensorProto_EXTERNAL) {
			t.Errorf("%s (%d bytes): external=%v with the default 1024-byte threshold", p.GetName(), size, p.GetDataLocation() == pb.TensorProto_EXTERNAL)
		}
		if p.GetDataLocation() != pb.TensorProto_EXTERNAL {
			continue
		}
		ext++
		ref, err := back.externalRef(p)
		if err != nil {
			t.Fatal(err)
		}
		if ref.offset%4096 != 0 || !isSaveData("m.onnx", filepath.Base(ref.path)) {
			t.Errorf("%s at %s offset %d", p.GetName(), ref.path, ref.offset)
		}
	}
	if ext == 0 {
		t.Fatal("nothing went to the data file")
	}
	for _, name := range m.Initializers() {
		a, _ := m.Initializer(name)
		b, err := back.Initializer(name)
		if err != nil || !bytes.Equal(a.Bytes(), b.Bytes()) {
			t.Errorf("%s differs after the external round trip (%v)", name, err)
		}
	}
	// a small model saved with ExternalAuto stays inline, with no data file
	small := filepath.Join(dir, "small.onnx")
	if err := m.Save(small, nil); err != nil {
		t.Fatal(err)
	}
	if dataFilesNear(t, small) != nil {
		t.Error("ExternalAuto wrote a data file for a small model")
	}
	// nothing reaches the threshold: no data file, all inline
	none := filepath.Join(dir, "none.onnx")
	if err := m.Save(none, &SaveOptions{External: ExternalAlways, Threshold: 1 << 30}); err != nil {
		t.Fatal(err)
	}
	if dataFilesNear(t, none) != nil {
		t.Error("a data file without tensors")
	}
	assertNoTemp(t, dir)
}

// TestInputNeverModified hashes a model with external data before and after
// loading, reading, editing and saving it elsewhere (and next to itself).
func TestInputNeverModified(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "in.onnx")
	if err := kitchenSink(t, fixtureOpts{hidden: 300}).Save(src, &SaveOptions{External: ExternalAlways}); err != nil {
		t.Fatal(err)
	}
	before := hashFiles(t, dir)
	m, err := Load(src)
	if err != nil {
		t.Fatal(err)
	}
	w1, _ := m.Initializer("W1")
	v, _ := w1.Float32()
	for i := range v {
		v[i] = 0
	}
	z, _ := FromFloat32("W1", Float, w1.Shape, v)
	if err := m.SetInitializer(z); err != nil {
		t.Fatal(err)
	}
	m.EnsureNodeNames()
	m.SetMetadata("onnxpost.test", "1")
	out := t.TempDir()
	for i, o := range []*SaveOptions{nil, {External: ExternalAlways}, {External: ExternalNever}, {External: ExternalAlways, Transform: func(_ string, t *Tensor) (*Tensor, error) { return t, nil }}} {
		if err := m.Save(filepath.Join(out, strconv.Itoa(i)+".onnx"), o); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Save(filepath.Join(dir, "other.onnx"), &SaveOptions{External: ExternalAlways}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Bytes(); err != nil {
		t.Fatal(err)
	}
	after := hashFiles(t, dir)
	for k := range after {
		if strings.HasPrefix(k, "other.onnx") {
			delete(after, k)
		}
	}
	sameHashes(t, "input folder", before, after)
	// and the loaded model still reads the original data
	again, _ := Load(src)
	a, _ := again.Initializer("W1")
	if a.ZeroFraction() == 1 {
		t.Error("the input's W1 was overwritten")
	}
}

// TestSaveFailureIsAtomic: a Save that fails part-way leaves an existing
// output (model and data file) untouched and no temporary file behind.
func TestSaveFailureIsAtomic(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out.onnx")
	m := kitchenSink(t, fixtureOpts{hidden: 300})
	if err := m.Save(out, &SaveOptions{External: ExternalAlways}); err != nil {
		t.Fatal(err)
	}
	before := hashFiles(t, dir)
	boom := errors.New("boom")
	n := len(m.Initializers())
	for _, failAt := range []int{1, n / 2, n} {
		for _, mode := range []ExternalMode{ExternalAlways, ExternalNever} {
			var calls atomic.Int32
			err := m.Save(out, &SaveOptions{External: mode, Workers: 3, Transform: func(name string, t *Tensor) (*Tensor, error) {
				if calls.Add(1) == int32(failAt) {
					return nil, boom
				}
				return t, nil
			}})
			if !errors.Is(err, boom) {
				t.Fatalf("fail at %d: got %v, want boom", failAt, err)
			}
			sameHashes(t, "output after a failed Save", before, hashFiles(t, dir))
			assertNoTemp(t, dir)
		}
	}
	// renaming in a Transform is refused
	err := m.Save(out, &SaveOptions{Transform: func(name string, t *Tensor) (*Tensor, error) {
		c := t.Clone()
		c.Name = "renamed"
		return c, nil
	}})
	if err == nil {
		t.Fatal("a renaming Transform was accepted")
	}
	sameHashes(t, "output after a renaming Transform", before, hashFiles(t, dir))
	assertNoTemp(t, dir)
	// an output folder that does not exist
	if err := m.Save(filepath.Join(dir, "no", "such", "m.onnx"), nil); err == nil {
		t.Fatal("Save into a missing folder succeeded")
	}
}

func TestSaveTransform(t *testing.T) {
	m := kitchenSink(t, fixtureOpts{hidden: 300})
	dir := t.TempDir()
	out := filepath.Join(dir, "t.onnx")
	var seen atomic.Int32
	err := m.Save(out, &SaveOptions{External: ExternalAlways, Workers: 4, Transform: func(name string, t *Tensor) (*Tensor, error) {
		seen.Add(1)
		if t.DType != Float {
			return t, nil
		}
		v, err := t.Float32()
		if err != nil {
			return nil, err
		}
		for i := range v {
			v[i] *= 2
		}
		return FromFloat32(name, Float16, t.Shape, v) // change the dtype too
	}})
	if err != nil {
		t.Fatal(err)
	}
	if int(seen.Load()) != len(m.Initializers()) {
		t.Errorf("Transform called %d times for %d initializers", seen.Load(), len(m.Initializers()))
	}
	back, err := Load(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range m.Initializers() {
		a, _ := m.Initializer(name)
		b, err := back.Initializer(name)
		if err != nil {
			t.Fatal(err)
		}
		if a.DType != Float {
			if !bytes.Equal(a.Bytes(), b.Bytes()) {
				t.Errorf("%s (%v) changed", name, a.DType)
			}
			continue
		}
		if b.DType != Float16 {
			t.Errorf("%s: dtype %v after Transform, want float16", name, b.DType)
		}
		av, _ := a.Float32()
		bv, _ := b.Float32()
		for i := range av {
			if want := Float16ToFloat32(Float32ToFloat16(2 * av[i])); bv[i] != want {
				t.Errorf("%s[%d] = %v, want %v", name, i, bv[i], want)
				break
			}
		}
	}
	// the model itself is unchanged by a Save with a Transform
	w, _ := m.Initializer("W1")
	if w.DType != Float {
		t.Error("Save with a Transform changed the model")
	}
}

func TestSetInitializerKeepsPlaceAndDoc(t *testing.T) {
	m := kitchenSink(t, fixtureOpts{})
	m.p.Graph.Initializer[2].DocString = proto.String("keep me")
	names := m.Initializers()
	tt, _ := FromFloat32(names[2], Float, []int64{1}, []float32{3})
	if err := m.SetInitializer(tt); err != nil {
		t.Fatal(err)
	}
	if m.Initializers()[2] != names[2] || m.p.Graph.Initializer[2].GetDocString() != "keep me" {
		t.Error("SetInitializer moved the tensor or lost its doc string")
	}
	if err := m.SetInitializer(&Tensor{Name: "bad", DType: Float, Shape: []int64{2}, data: make([]byte, 4)}); !errors.Is(err, ErrFormat) {
		t.Errorf("mis-sized tensor: got %v, want ErrFormat", err)
	}
	if err := m.RemoveInitializer("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("RemoveInitializer(nope): %v", err)
	}
	if _, err := m.Initializer("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Initializer(nope): %v", err)
	}
}

// TestSaveInlinesNestedExternalData: a Constant's value and a subgraph's
// initializer held in external data (as onnx's external-data converter
// writes them) must survive a Save into another folder.
func TestSaveInlinesNestedExternalData(t *testing.T) {
	dir := t.TempDir()
	data := make([]byte, 128)
	for i := range data {
		data[i] = byte(i)
	}
	if err := os.WriteFile(filepath.Join(dir, "w.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	p := pbModel(rawTensor("W", Float, []int64{2}, f32bytes(2)))
	p.Graph.Node = append(p.Graph.Node,
		&pb.NodeProto{OpType: proto.String("Constant"), Name: proto.String("c"), Output: []string{"C"},
			Attribute: []*pb.AttributeProto{{Name: proto.String("value"), Type: pb.AttributeProto_TENSOR.Enum(),
				T: extTensor("", Float, []int64{16}, "location", "w.bin", "offset", "0", "length", "64")}}},
		&pb.NodeProto{OpType: proto.String("If"), Name: proto.String("if"), Input: []string{"cond"}, Output: []string{"Z"},
			Attribute: []*pb.AttributeProto{{Name: proto.String("then_branch"), Type: pb.AttributeProto_GRAPH.Enum(),
				G: &pb.GraphProto{Name: proto.String("then"), Initializer: []*pb.TensorProto{
					extTensor("sub", Float, []int64{16}, "location", "w.bin", "offset", "64", "length", "64")}}}}})
	if err := os.WriteFile(filepath.Join(dir, "m.onnx"), marshal(t, p), 0o644); err != nil {
		t.Fatal(err)
	}
	before := hashFiles(t, dir)
	m, err := Load(filepath.Join(dir, "m.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	c, _ := m.Node("c")
	want, err := m.NodeTensor(c, "value")
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	for i, o := range []*SaveOptions{{External: ExternalNever}, {External: ExternalAlways, Threshold: 1}} {
		path := filepath.Join(out, strconv.Itoa(i)+".onnx")
		if err := m.Save(path, o); err != nil {
			t.Fatal(err)
		}
		back, err := Load(path)
		if err != nil {
			t.Fatalf("saved model does not load from its own folder: %v", err)
		}
		bc, _ := back.Node("c")
		got, err := back.NodeTensor(bc, "value")
		if err != nil || !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Fatalf("Constant value changed through Save (%v)", err)
		}
		sub := back.p.Graph.Node[2].Attribute[0].G.Initializer[0]
		if sub.GetDataLocation() == pb.TensorProto_EXTERNAL || !bytes.Equal(sub.RawData, data[64:]) || sub.GetName() != "sub" {
			t.Fatalf("subgraph initializer not inlined: %v", sub)
		}
	}
	b, err := m.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LoadBytes(b, ""); err != nil {
		t.Fatalf("Bytes still references external data: %v", err)
	}
	// the model itself still references its external data
	if !isExternal(m.p.Graph.Node[1].Attribute[0].T) {
		t.Error("Save changed the model's own Constant")
	}
	sameHashes(t, "input folder", before, hashFiles(t, dir))
}

// TestExternalAutoKeepsExternalData: with default options a model loaded
// with external data is saved with external data (streamed file to file),
// a model without stays inline.
func TestExternalAutoKeepsExternalData(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src.onnx")
	if err := kitchenSink(t, fixtureOpts{hidden: 300}).Save(src, &SaveOptions{External: ExternalAlways}); err != nil {
		t.Fatal(err)
	}
	m, err := Load(src)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.onnx")
	if err := m.Save(out, nil); err != nil {
		t.Fatal(err)
	}
	back, err := Load(out)
	if err != nil {
		t.Fatal(err)
	}
	if !back.IsExternal("W1") {
		t.Error("ExternalAuto wrote a model loaded with external data inline")
	}
	if d := dataFilesNear(t, out); len(d) != 1 {
		t.Errorf("data files beside %s: %v, want one", out, d)
	}
	inl := filepath.Join(dir, "inline.onnx")
	if err := kitchenSink(t, fixtureOpts{hidden: 300}).Save(inl, nil); err != nil {
		t.Fatal(err)
	}
	if dataFilesNear(t, inl) != nil {
		t.Error("ExternalAuto wrote external data for an inline model")
	}
}

// dataFilesNear lists the files beside path named like a data file of a
// save to path (path.<token>.data) or like the old fixed name (path.data).
func dataFilesNear(t *testing.T, path string) []string {
	t.Helper()
	m, err := filepath.Glob(path + ".*.data")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + ".data"); err == nil {
		m = append(m, path+".data")
	}
	return m
}

// SaveFile reports the files it wrote and their sizes, as found on disk:
// inline (no data file), external, and nothing on a refused path.
func TestSaveFileReportsWhatItWrote(t *testing.T) {
	m := kitchenSink(t, fixtureOpts{hidden: 300})
	dir := t.TempDir()
	for _, tc := range []struct {
		name     string
		external ExternalMode
		data     bool
	}{{"inline.onnx", ExternalNever, false}, {"ext.onnx", ExternalAlways, true}} {
		out := filepath.Join(dir, tc.name)
		w, err := m.SaveFile(out, &SaveOptions{External: tc.external})
		if err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(out)
		if err != nil {
			t.Fatal(err)
		}
		if w.Path != out || w.ModelBytes != st.Size() {
			t.Errorf("%s: wrote %+v, file has %d bytes", tc.name, w, st.Size())
		}
		if (w.DataFile != "") != tc.data {
			t.Fatalf("%s: data file %q, want one: %v", tc.name, w.DataFile, tc.data)
		}
		if tc.data {
			ds, err := os.Stat(w.DataPath())
			if err != nil || ds.Size() != w.DataBytes || !isSaveData(tc.name, w.DataFile) {
				t.Errorf("%s: data %s (%d bytes): %v", tc.name, w.DataFile, w.DataBytes, err)
			}
		} else if w.DataPath() != "" || w.DataBytes != 0 {
			t.Errorf("%s: inline save reports data %+v", tc.name, w)
		}
		disk, err := DiskSize(out)
		if err != nil || disk != w.Bytes() {
			t.Errorf("%s: Bytes() %d, DiskSize %d (%v)", tc.name, w.Bytes(), disk, err)
		}
	}
	if w, err := m.SaveFile(dir, nil); err == nil || w != (Saved{}) {
		t.Errorf("saving over a folder: %+v, %v", w, err)
	}
}

// TestSaveFinish: metadata set by Finish, after the tensors are written, is
// in the saved model (external and inline saves); a Finish error fails the
// save and leaves the previous output and no temporary file.
func TestSaveFinish(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out.onnx")
	m := kitchenSink(t, fixtureOpts{hidden: 300})
	for _, mode := range []ExternalMode{ExternalAlways, ExternalNever} {
		var wrote atomic.Int32
		err := m.Derive().Save(out, &SaveOptions{External: mode,
			Transform: func(name string, t *Tensor) (*Tensor, error) { wrote.Add(1); return t, nil },
			Finish: func(fm *Model) error {
				if int(wrote.Load()) != len(m.Initializers()) {
					return fmt.Errorf("Finish called after %d of %d tensors", wrote.Load(), len(m.Initializers()))
				}
				fm.SetMetadata("late", "digest")
				return nil
			}})
		if err != nil {
			t.Fatal(err)
		}
		back, err := Load(out)
		if err != nil {
			t.Fatal(err)
		}
		if v, ok := back.Metadata()["late"]; !ok || v != "digest" {
			t.Fatalf("mode %v: metadata set in Finish not saved: %q", mode, back.Metadata())
		}
	}
	before := hashFiles(t, dir)
	boom := errors.New("boom")
	for _, mode := range []ExternalMode{ExternalAlways, ExternalNever} {
		err := m.Save(out, &SaveOptions{External: mode, Finish: func(*Model) error { return boom }})
		if !errors.Is(err, boom) {
			t.Fatalf("got %v, want boom", err)
		}
		sameHashes(t, "output after a failed Finish", before, hashFiles(t, dir))
		assertNoTemp(t, dir)
	}
}
