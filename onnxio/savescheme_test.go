package onnxio

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	pb "github.com/onnxpost/onnxpost/onnxio/internal/onnxpb"
)

// TestSaveFailureChangesNothing saves over an existing external output
// with a transform that fails part-way, and with a cancelled context
// (before the save and during it): the old output and its data stay as
// they were and no temporary file is left.
func TestSaveFailureChangesNothing(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "m.onnx")
	m := kitchenSink(t, fixtureOpts{hidden: 300})
	if err := m.Save(out, &SaveOptions{External: ExternalAlways}); err != nil {
		t.Fatal(err)
	}
	before := hashFiles(t, dir)
	boom := errors.New("boom")
	calls := 0
	failing := func(_ string, t *Tensor) (*Tensor, error) {
		if calls++; calls == 3 {
			return nil, boom
		}
		return t, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancelling := func(_ string, t *Tensor) (*Tensor, error) {
		cancel()
		return t, nil
	}
	done, stop := context.WithCancel(context.Background())
	stop()
	cases := []struct {
		name string
		o    SaveOptions
		want error
	}{
		{"transform error", SaveOptions{External: ExternalAlways, Transform: failing, Workers: 1}, boom},
		{"cancelled during", SaveOptions{External: ExternalAlways, Transform: cancelling, Workers: 1, Context: ctx}, context.Canceled},
		{"cancelled before", SaveOptions{External: ExternalNever, Context: done}, context.Canceled},
	}
	for _, c := range cases {
		if err := m.Save(out, &c.o); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
		sameHashes(t, c.name, before, hashFiles(t, dir))
	}
	assertNoTemp(t, dir)
}

// TestSaveRemovesOnlyItsOwnData: a save removes the data file of the save
// it replaced, never a hand-made data file that the replaced model read.
func TestSaveRemovesOnlyItsOwnData(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "m.onnx")
	m := kitchenSink(t, fixtureOpts{hidden: 300})
	if err := m.Save(out, &SaveOptions{External: ExternalAlways}); err != nil {
		t.Fatal(err)
	}
	first, _ := DataFiles(out)
	if len(first) != 1 || !isSaveData("m.onnx", first[0]) {
		t.Fatalf("data files %v", first)
	}
	if err := m.Save(out, &SaveOptions{External: ExternalAlways}); err != nil {
		t.Fatal(err)
	}
	second, _ := DataFiles(out)
	if len(second) != 1 || second[0] == first[0] {
		t.Fatalf("second save's data files %v (first %v)", second, first)
	}
	if _, err := os.Stat(filepath.Join(dir, first[0])); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the replaced save's data file %s is still there (%v)", first[0], err)
	}
	// an inline save removes the data of the external save it replaces
	if err := m.Save(out, &SaveOptions{External: ExternalNever}); err != nil {
		t.Fatal(err)
	}
	if d := dataFilesNear(t, out); d != nil {
		t.Errorf("data files left after an inline save: %v", d)
	}
	// a hand-made data file (the old fixed name) is kept
	hand, err := Load(out)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range hand.p.Graph.Initializer {
		if i == 0 {
			tt, _ := hand.tensorFromProto(p)
			if err := os.WriteFile(out+".data", tt.data, 0o644); err != nil {
				t.Fatal(err)
			}
			hand.p.Graph.Initializer[i] = &pb.TensorProto{Name: p.Name, DataType: p.DataType, Dims: p.Dims,
				DataLocation: pb.TensorProto_EXTERNAL.Enum(),
				ExternalData: []*pb.StringStringEntryProto{{Key: strPtr("location"), Value: strPtr("m.onnx.data")}}}
		}
	}
	b, err := hand.marshalWith(hand.p.Graph.Initializer)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(out, b); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(out); err != nil {
		t.Fatal(err)
	}
	if err := m.Save(out, &SaveOptions{External: ExternalAlways}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(out + ".data"); err != nil {
		t.Errorf("a hand-made data file was removed: %v", err)
	}
	assertNoTemp(t, dir)
}

func strPtr(s string) *string { return &s }

// TestConcurrentReads runs Bytes, Save and reads of one model at once
// (meant for go test -race: the model must not be written while saving).
func TestConcurrentReads(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src.onnx")
	if err := kitchenSink(t, fixtureOpts{hidden: 300}).Save(src, &SaveOptions{External: ExternalAlways}); err != nil {
		t.Fatal(err)
	}
	m, err := Load(src)
	if err != nil {
		t.Fatal(err)
	}
	want, err := m.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 3; i++ {
				b, err := m.Bytes()
				if err == nil && string(b) != string(want) {
					err = errors.New("Bytes changed between calls")
				}
				if err == nil {
					err = m.Save(filepath.Join(dir, fmt.Sprintf("out%d.onnx", g)), &SaveOptions{External: ExternalMode(1 + (g+i)%2)})
				}
				if err == nil {
					for _, n := range m.Initializers() {
						if _, err = m.Initializer(n); err != nil {
							break
						}
					}
				}
				if err == nil {
					_, err = m.Weights()
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestDuplicateInitializers: two initializers with one name (different
// shapes), or an initializer and a sparse initializer with one name, are
// refused at load, naming the tensor.
func TestDuplicateInitializers(t *testing.T) {
	dir := t.TempDir()
	w, _ := FromFloat32("W", Float, []int64{2, 2}, []float32{1, 2, 3, 4})
	w2, _ := FromFloat32("W", Float, []int64{3}, []float32{1, 2, 3})
	idx, _ := NewTensor("", Int64, []int64{1}, make([]byte, 8))
	cases := map[string]func(g *pb.GraphProto){
		"two initializers": func(g *pb.GraphProto) { g.Initializer = append(g.Initializer, tensorProto(w2)) },
		"initializer and sparse": func(g *pb.GraphProto) {
			g.SparseInitializer = append(g.SparseInitializer, &pb.SparseTensorProto{Values: tensorProto(w2), Indices: tensorProto(idx), Dims: []int64{5}})
		},
		"in a subgraph": func(g *pb.GraphProto) {
			sg := &pb.GraphProto{Name: strPtr("body"), Initializer: []*pb.TensorProto{tensorProto(w), tensorProto(w2)}}
			g.Node = append(g.Node, &pb.NodeProto{OpType: strPtr("If"), Attribute: []*pb.AttributeProto{{Name: strPtr("then_branch"), Type: pb.AttributeProto_GRAPH.Enum(), G: sg}}})
		},
	}
	for name, edit := range cases {
		m := New("dup", 17)
		if err := m.SetInitializer(w); err != nil {
			t.Fatal(err)
		}
		edit(m.p.Graph)
		b, err := m.marshalWith(m.p.Graph.Initializer)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "dup.onnx")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err = Load(path)
		if !errors.Is(err, ErrFormat) || !strings.Contains(fmt.Sprint(err), `"W"`) {
			t.Errorf("%s: got %v, want ErrFormat naming \"W\"", name, err)
		}
	}
}
