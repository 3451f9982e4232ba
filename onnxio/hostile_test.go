package onnxio

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	pb "github.com/onnxpost/onnxpost/onnxio/internal/onnxpb"
)

// pbModel returns a one-node model (Y = X·W) whose graph holds inits.
func pbModel(inits ...*pb.TensorProto) *pb.ModelProto {
	return &pb.ModelProto{
		IrVersion:   proto.Int64(10),
		OpsetImport: []*pb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(21)}},
		Graph: &pb.GraphProto{
			Name:        proto.String("g"),
			Node:        []*pb.NodeProto{{OpType: proto.String("MatMul"), Name: proto.String("mm"), Input: []string{"X", "W"}, Output: []string{"Y"}}},
			Initializer: inits,
			Input:       []*pb.ValueInfoProto{{Name: proto.String("X")}},
			Output:      []*pb.ValueInfoProto{{Name: proto.String("Y")}},
		},
	}
}

func rawTensor(name string, dt DType, dims []int64, raw []byte) *pb.TensorProto {
	return &pb.TensorProto{Name: proto.String(name), DataType: proto.Int32(int32(dt)), Dims: dims, RawData: raw}
}

func extTensor(name string, dt DType, dims []int64, kv ...string) *pb.TensorProto {
	t := &pb.TensorProto{Name: proto.String(name), DataType: proto.Int32(int32(dt)), Dims: dims, DataLocation: pb.TensorProto_EXTERNAL.Enum()}
	for i := 0; i+1 < len(kv); i += 2 {
		t.ExternalData = append(t.ExternalData, &pb.StringStringEntryProto{Key: proto.String(kv[i]), Value: proto.String(kv[i+1])})
	}
	return t
}

func marshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// hostileDir returns a folder "model" inside a parent that also holds a
// file "secret" (outside the model folder), with model/w.bin (64 bytes),
// model/link-in → w.bin, model/link-out → ../secret and model/sub (a
// folder).
func hostileDir(t *testing.T) string {
	t.Helper()
	parent := t.TempDir()
	dir := filepath.Join(parent, "model")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Mkdir(dir, 0o755))
	must(os.WriteFile(filepath.Join(parent, "secret"), make([]byte, 64), 0o644))
	must(os.WriteFile(filepath.Join(dir, "w.bin"), make([]byte, 64), 0o644))
	must(os.Symlink("w.bin", filepath.Join(dir, "link-in")))
	must(os.Symlink(filepath.Join("..", "secret"), filepath.Join(dir, "link-out")))
	must(os.Symlink(parent, filepath.Join(dir, "link-dir")))
	must(os.Mkdir(filepath.Join(dir, "sub"), 0o755))
	return dir
}

func TestHostileModels(t *testing.T) {
	dir := hostileDir(t)
	f32 := func(n int) []byte { return make([]byte, 4*n) }
	ext := func(kv ...string) *pb.ModelProto { return pbModel(extTensor("W", Float, []int64{4, 4}, kv...)) }
	cases := []struct {
		name   string
		model  *pb.ModelProto
		limits *Limits
		want   error // nil: must load
	}{
		{"valid", pbModel(rawTensor("W", Float, []int64{2, 2}, f32(4))), nil, nil},
		{"no graph", &pb.ModelProto{IrVersion: proto.Int64(10)}, nil, ErrFormat},
		{"negative dim", pbModel(rawTensor("W", Float, []int64{-1, 4}, f32(4))), nil, ErrFormat},
		{"dims product overflows", pbModel(rawTensor("W", Float, []int64{1 << 40, 1 << 40}, f32(4))), nil, ErrFormat},
		{"dims product wraps to a small number", pbModel(rawTensor("W", Float, []int64{1 << 32, 1 << 32, 4}, f32(4))), nil, ErrFormat},
		{"dims over the element limit", pbModel(rawTensor("W", Float, []int64{1 << 20, 1 << 20}, f32(4))), nil, ErrLimit},
		{"huge dim before a zero dim", pbModel(rawTensor("W", Float, []int64{math.MaxInt64, 0}, nil)), nil, ErrFormat},
		{"zero dim", pbModel(rawTensor("W", Float, []int64{0, 1 << 40}, nil)), nil, nil},
		{"rank over the limit", pbModel(rawTensor("W", Float, make([]int64, 33), nil)), nil, ErrLimit},
		{"raw_data too short", pbModel(rawTensor("W", Float, []int64{2, 2}, f32(3))), nil, ErrFormat},
		{"raw_data too long", pbModel(rawTensor("W", Float, []int64{2, 2}, f32(5))), nil, ErrFormat},
		{"raw_data with string type", pbModel(&pb.TensorProto{Name: proto.String("W"), DataType: proto.Int32(int32(String)), Dims: []int64{2}, StringData: [][]byte{[]byte("a")}}), nil, ErrFormat},
		{"typed data too short", pbModel(&pb.TensorProto{Name: proto.String("W"), DataType: proto.Int32(int32(Float)), Dims: []int64{3}, FloatData: []float32{1, 2}}), nil, ErrFormat},
		{"packed int4 typed data too long", pbModel(&pb.TensorProto{Name: proto.String("W"), DataType: proto.Int32(int32(Int4)), Dims: []int64{3}, Int32Data: []int32{1, 2, 3}}), nil, ErrFormat},
		{"unknown data type", pbModel(rawTensor("W", DType(99), []int64{2}, f32(2))), nil, ErrDType},
		{"bad constant in a node", func() *pb.ModelProto {
			m := pbModel()
			m.Graph.Node = append(m.Graph.Node, &pb.NodeProto{OpType: proto.String("Constant"), Output: []string{"W"},
				Attribute: []*pb.AttributeProto{{Name: proto.String("value"), Type: pb.AttributeProto_TENSOR.Enum(), T: rawTensor("", Float, []int64{8}, f32(2))}}})
			return m
		}(), nil, ErrFormat},
		{"too many nodes", pbModel(rawTensor("W", Float, []int64{2}, f32(2))), &Limits{MaxModelBytes: 1 << 20, MaxTensorElements: 1 << 20, MaxRank: 8, MaxNodes: 0}, ErrLimit},
		{"model over the byte limit", pbModel(rawTensor("W", Float, []int64{64}, f32(64))), &Limits{MaxModelBytes: 100, MaxTensorElements: 1 << 20, MaxRank: 8, MaxNodes: 10}, ErrLimit},
		{"subgraphs nested too deep", func() *pb.ModelProto {
			m := pbModel()
			g := m.Graph
			for i := 0; i < 70; i++ {
				sub := &pb.GraphProto{Name: proto.String("s" + strconv.Itoa(i))}
				g.Node = append(g.Node, &pb.NodeProto{OpType: proto.String("If"), Attribute: []*pb.AttributeProto{{Name: proto.String("then_branch"), Type: pb.AttributeProto_GRAPH.Enum(), G: sub}}})
				g = sub
			}
			return m
		}(), nil, ErrLimit},
		{"bad tensor in a subgraph", func() *pb.ModelProto {
			m := pbModel()
			sub := &pb.GraphProto{Initializer: []*pb.TensorProto{rawTensor("s", Float, []int64{-3}, nil)}}
			m.Graph.Node = append(m.Graph.Node, &pb.NodeProto{OpType: proto.String("Loop"), Attribute: []*pb.AttributeProto{{Name: proto.String("body"), Type: pb.AttributeProto_GRAPH.Enum(), G: sub}}})
			return m
		}(), nil, ErrFormat},

		// external data
		{"external: valid", ext("location", "w.bin", "offset", "0", "length", "64"), nil, nil},
		{"external: valid, no length (rest of file)", ext("location", "w.bin"), nil, nil},
		{"external: symlink inside the folder", ext("location", "link-in", "length", "64"), nil, nil},
		{"external: absolute path", ext("location", filepath.Join(dir, "w.bin")), nil, ErrExternalPath},
		{"external: the spill file's location", ext("location", spillLocation, "offset", "0", "length", "64"), nil, ErrExternalPath},
		{"external: absolute path outside", ext("location", "/etc/passwd"), nil, ErrExternalPath},
		{"external: ..", ext("location", "../secret"), nil, ErrExternalPath},
		{"external: .. inside a path", ext("location", "sub/../../secret"), nil, ErrExternalPath},
		{"external: symlink leaving the folder", ext("location", "link-out"), nil, ErrExternalPath},
		{"external: through a symlinked folder", ext("location", "link-dir/secret"), nil, ErrExternalPath},
		{"external: NUL in the path", ext("location", "w.bin\x00x"), nil, ErrExternalPath},
		{"external: no location", ext("offset", "0"), nil, ErrFormat},
		{"external: missing file", ext("location", "nope.bin"), nil, ErrFormat},
		{"external: a folder", ext("location", "sub"), nil, ErrFormat},
		{"external: offset past the end", ext("location", "w.bin", "offset", "65", "length", "64"), nil, ErrFormat},
		{"external: offset+length past the end", ext("location", "w.bin", "offset", "4096", "length", "64"), nil, ErrFormat},
		{"external: negative offset", ext("location", "w.bin", "offset", "-8", "length", "64"), nil, ErrFormat},
		{"external: offset not a number", ext("location", "w.bin", "offset", "0x10"), nil, ErrFormat},
		{"external: huge length", ext("location", "w.bin", "offset", "0", "length", "9223372036854775807"), nil, ErrFormat},
		{"external: offset overflow", ext("location", "w.bin", "offset", "9223372036854775807", "length", "64"), nil, ErrFormat},
		{"external: length beyond int64", ext("location", "w.bin", "length", "99999999999999999999"), nil, ErrFormat},
		{"external: length disagrees with dims", ext("location", "w.bin", "offset", "0", "length", "32"), nil, ErrFormat},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := marshal(t, c.model)
			var opts []Option
			if c.limits != nil {
				opts = append(opts, WithLimits(*c.limits))
			}
			m, err := LoadBytes(b, dir, opts...)
			if c.want == nil {
				if err != nil {
					t.Fatalf("want success, got %v", err)
				}
				for _, name := range m.Initializers() {
					tt, err := m.Initializer(name)
					if err != nil {
						t.Fatalf("initializer %q: %v", name, err)
					}
					if _, err := tt.Float64(); err != nil {
						t.Fatalf("initializer %q: %v", name, err)
					}
				}
				return
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			// same through a file
			path := filepath.Join(dir, "m.onnx")
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			defer os.Remove(path)
			if _, err := Load(path, opts...); !errors.Is(err, c.want) {
				t.Fatalf("Load: got %v, want %v", err, c.want)
			}
		})
	}
}

func TestExternalDataNeedsAFolder(t *testing.T) {
	b := marshal(t, pbModel(extTensor("W", Float, []int64{4, 4}, "location", "w.bin")))
	if _, err := LoadBytes(b, ""); !errors.Is(err, ErrExternalPath) {
		t.Fatalf("got %v, want ErrExternalPath", err)
	}
	tb := marshal(t, extTensor("W", Float, []int64{4}, "location", "w.bin"))
	if _, err := ParseTensor(tb); !errors.Is(err, ErrExternalPath) {
		t.Fatalf("ParseTensor: got %v, want ErrExternalPath", err)
	}
}

// TestExternalFileShrinks: the data file is cut after Load; reading the
// tensor then gives ErrFormat, not a short tensor or a panic.
func TestExternalFileShrinks(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "w.bin"), make([]byte, 64), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := LoadBytes(marshal(t, pbModel(extTensor("W", Float, []int64{16}, "location", "w.bin", "length", "64"))), dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(dir, "w.bin"), 10); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Initializer("W"); !errors.Is(err, ErrFormat) {
		t.Fatalf("got %v, want ErrFormat", err)
	}
	if err := m.Save(filepath.Join(dir, "out.onnx"), &SaveOptions{External: ExternalAlways}); !errors.Is(err, ErrFormat) {
		t.Fatalf("Save: got %v, want ErrFormat", err)
	}
	assertNoTemp(t, dir)
}

func TestTruncatedAndCorrupted(t *testing.T) {
	m := pbModel(rawTensor("W", Float, []int64{4, 4}, f32bytes(16)))
	m.Graph.Node = append(m.Graph.Node, &pb.NodeProto{OpType: proto.String("Relu"), Input: []string{"Y"}, Output: []string{"Z"}})
	m.ProducerName = proto.String("test")
	b := marshal(t, m)
	for n := 0; n < len(b); n++ {
		got, err := LoadBytes(b[:n], "")
		if err != nil && !errors.Is(err, ErrFormat) {
			t.Fatalf("prefix %d: got %v, want ErrFormat", n, err)
		}
		if err == nil && got.NumNodes() == 2 && len(got.Initializers()) == 1 && n < len(b)-len("test")-2 {
			t.Fatalf("prefix %d of %d loaded as the whole model", n, len(b))
		}
	}
	// flip every byte in turn: error or a model, never a panic; an error is
	// always one of the package's sentinels
	for i := range b {
		c := append([]byte(nil), b...)
		c[i] ^= 0xff
		if _, err := LoadBytes(c, ""); err != nil && !errors.Is(err, ErrFormat) && !errors.Is(err, ErrLimit) && !errors.Is(err, ErrDType) && !errors.Is(err, ErrExternalPath) {
			t.Fatalf("byte %d flipped: error without a sentinel: %v", i, err)
		}
	}
	// a length prefix that claims more bytes than there are
	huge := protowire.AppendTag(nil, 7, protowire.BytesType) // ModelProto.graph
	huge = protowire.AppendVarint(huge, 1<<40)
	if _, err := LoadBytes(huge, ""); !errors.Is(err, ErrFormat) {
		t.Fatalf("huge declared length: got %v, want ErrFormat", err)
	}
	if _, err := ParseTensor(huge); !errors.Is(err, ErrFormat) {
		t.Fatalf("ParseTensor, huge declared length: got %v, want ErrFormat", err)
	}
	if _, err := LoadBytes([]byte("not a model at all"), ""); !errors.Is(err, ErrFormat) {
		t.Fatalf("text: got %v, want ErrFormat", err)
	}
}

func f32bytes(n int) []byte { return make([]byte, 4*n) }

func TestLoadRejectsNonRegular(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(dir); !errors.Is(err, ErrFormat) || !errors.Is(err, ErrNotRegular) {
		t.Fatalf("folder: got %v, want ErrFormat and ErrNotRegular", err)
	}
	// a FIFO (nobody writes it: opening it for reading would block) and a
	// symlink to an endless device are refused before they are read
	fifo := filepath.Join(dir, "fifo.onnx")
	if err := mkfifo(fifo); err != nil {
		t.Skip("no FIFOs here:", err)
	}
	zero := filepath.Join(dir, "zero.onnx")
	if err := os.Symlink("/dev/zero", zero); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{fifo, zero} {
		if _, err := Load(p); !errors.Is(err, ErrNotRegular) {
			t.Errorf("%s: got %v, want ErrNotRegular", p, err)
		}
		if _, err := ReadSignature(p); !errors.Is(err, ErrNotRegular) {
			t.Errorf("ReadSignature(%s): got %v, want ErrNotRegular", p, err)
		}
	}
	// external data that is a FIFO or a link to /dev/zero
	for loc, want := range map[string]error{"fifo.onnx": ErrNotRegular, "zero.onnx": ErrExternalPath} {
		m := New("ext", 17)
		m.p.Graph.Initializer = append(m.p.Graph.Initializer, &pb.TensorProto{Name: strPtr("W"), DataType: proto.Int32(int32(Float)), Dims: []int64{4},
			DataLocation: pb.TensorProto_EXTERNAL.Enum(),
			ExternalData: []*pb.StringStringEntryProto{{Key: strPtr("location"), Value: strPtr(loc)}, {Key: strPtr("length"), Value: strPtr("16")}}})
		b, err := m.marshalWith(m.p.Graph.Initializer)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, "m.onnx")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(p); !errors.Is(err, want) {
			t.Errorf("external data %s: got %v, want %v", loc, err, want)
		}
	}
	if _, err := Load(filepath.Join(dir, "missing.onnx")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing: got %v, want ErrNotExist", err)
	}
}

func assertNoTemp(t *testing.T, dir string) {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		if strings.HasPrefix(e.Name(), ".onnxpost") {
			t.Errorf("temporary file left behind: %s", e.Name())
		}
	}
}
