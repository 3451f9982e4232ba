package onnxio

import (
	"bytes"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"unsafe"
)

// mustBytes serializes m or fails the test.
func mustBytes(t testing.TB, m *Model) []byte {
	t.Helper()
	b, err := m.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDeriveEditorsLeaveOriginal: every editor called on a derived model
// leaves the model it was derived from byte-for-byte unchanged.
func TestDeriveEditorsLeaveOriginal(t *testing.T) {
	repl, _ := FromFloat32("W1", Float, []int64{8, 16}, make([]float32, 128))
	edits := []struct {
		name string
		file string // "" for the kitchen-sink model, else a testdata/weights fixture
		edit func(t *testing.T, d *Model) error
	}{
		{"SetInitializer", "", func(t *testing.T, d *Model) error { return d.SetInitializer(repl) }},
		{"RemoveInitializer", "", func(t *testing.T, d *Model) error { return d.RemoveInitializer("b1") }},
		{"SetMetadata", "", func(t *testing.T, d *Model) error { d.SetMetadata("k", "v2"); return nil }},
		{"SetOpset", "", func(t *testing.T, d *Model) error { d.SetOpset("", 17); return nil }},
		{"SetIRVersion", "", func(t *testing.T, d *Model) error { d.SetIRVersion(8); return nil }},
		{"EnsureNodeNames", "if.onnx", func(t *testing.T, d *Model) error {
			if d.EnsureNodeNames() == 0 {
				t.Fatal("nothing renamed: the fixture lost its unnamed node")
			}
			return nil
		}},
		{"RenameInput", "", func(t *testing.T, d *Model) error { d.RenameInput("h1", "X"); d.RenameInput("Y", "Z"); return nil }},
		{"ReplaceNode", "", func(t *testing.T, d *Model) error {
			return d.ReplaceNode("add1", []Node{{Name: "sub1", OpType: "Sub", Inputs: []string{"h1", "b1"}, Outputs: []string{"h2"}}})
		}},
		{"InsertNodes", "", func(t *testing.T, d *Model) error {
			return d.InsertNodes(Node{Name: "r", OpType: "Relu", Inputs: []string{"Y"}, Outputs: []string{"Yr"}})
		}},
		{"RemoveNode", "", func(t *testing.T, d *Model) error { return d.RemoveNode("gather") }},
		{"Outputs and inputs", "", func(t *testing.T, d *Model) error {
			d.AddOutput(ValueInfo{Name: "h1"})
			d.AddInput(ValueInfo{Name: "extra", DType: Float})
			d.SetOutputs(nil)
			return nil
		}},
		{"InitializersToInputs", "", func(t *testing.T, d *Model) error {
			_, err := d.InitializersToInputs([]string{"W1", "b1"})
			return err
		}},
		{"FoldConstantWeights", "", func(t *testing.T, d *Model) error {
			_, err := d.FoldConstantWeights()
			return err
		}},
		{"RemoveWeight", "", func(t *testing.T, d *Model) error { return d.RemoveWeight("cW") }},
		{"DensifySparseInitializers", "sparse.onnx", func(t *testing.T, d *Model) error {
			_, err := d.DensifySparseInitializers()
			return err
		}},
		{"HoistWeight", "if.onnx", func(t *testing.T, d *Model) error {
			ws, err := d.AllWeights()
			if err != nil {
				return err
			}
			for _, w := range ws {
				if w.Name == "Wt" {
					return d.HoistWeight(w)
				}
			}
			return fmt.Errorf("no Wt")
		}},
		{"RenameSubgraphReads", "if.onnx", func(t *testing.T, d *Model) error {
			for _, n := range d.Nodes() {
				if HasSubgraphs(n) {
					for _, v := range FreeNames(n) {
						n = RenameSubgraphReads(n, v, v+"_renamed")
					}
					return d.UpdateNode(n)
				}
			}
			return fmt.Errorf("no subgraph")
		}},
		{"DropStaleWeightInputs", "weight_input.onnx", func(t *testing.T, d *Model) error {
			for _, n := range d.Initializers() {
				if err := d.RemoveInitializer(n); err != nil {
					return err
				}
			}
			_, _ = DropStaleWeightInputs(d, d.Derive())
			return nil
		}},
	}
	for _, e := range edits {
		t.Run(e.name, func(t *testing.T) {
			var m *Model
			if e.file == "" {
				m = kitchenSink(t, fixtureOpts{})
				m.SetMetadata("k", "v")
			} else {
				m = loadWeightsFixture(t, e.file)
			}
			before := mustBytes(t, m)
			d := m.Derive()
			if err := e.edit(t, d); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(mustBytes(t, m), before) {
				t.Fatal("editing the derived model changed the original")
			}
			if bytes.Equal(mustBytes(t, d), before) {
				t.Fatal("the edit changed nothing: the test checks nothing")
			}
		})
	}
}

// TestDeriveSharesTensorData: a derived model reads the same tensor bytes
// as its original (nothing copied), and the With helpers return new models.
func TestDeriveSharesTensorData(t *testing.T) {
	m := kitchenSink(t, fixtureOpts{})
	zero, _ := FromFloat32("b1", Float, []int64{16}, make([]float32, 16))
	d, err := m.WithInitializers(zero)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := m.Initializer("W1")
	b, _ := d.Initializer("W1")
	if unsafe.SliceData(a.Bytes()) != unsafe.SliceData(b.Bytes()) {
		t.Error("W1 was copied, want shared")
	}
	ob, _ := m.Initializer("b1")
	if ob.ZeroFraction() == 1 {
		t.Error("WithInitializers changed the original's b1")
	}
	if nb, _ := d.Initializer("b1"); nb.ZeroFraction() != 1 {
		t.Error("derived b1 not replaced")
	}
	d2, err := m.WithoutInitializers("b1")
	if err != nil || d2.HasInitializer("b1") || !m.HasInitializer("b1") {
		t.Fatalf("WithoutInitializers: %v", err)
	}
	if _, err := m.WithoutInitializers("nope"); err == nil {
		t.Fatal("removing a missing initializer succeeded")
	}
	d3 := m.WithMetadata(map[string]string{"a": "1"})
	if d3.Metadata()["a"] != "1" || m.Metadata()["a"] != "" {
		t.Fatal("WithMetadata")
	}
	d4, err := m.WithNodeReplaced("add1", Node{Name: "sub1", OpType: "Sub", Inputs: []string{"h1", "b1"}, Outputs: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d4.Node("sub1"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Node("add1"); err != nil {
		t.Fatal("original lost add1")
	}
	if _, err := m.With(func(d *Model) error { return d.RemoveNode("nope") }); err == nil {
		t.Fatal("With: a failed edit returned no error")
	}
}

// TestDeriveConcurrentReaders: readers of a model run while models
// derived from it are edited and saved (run with -race).
func TestDeriveConcurrentReaders(t *testing.T) {
	m := kitchenSink(t, fixtureOpts{})
	m.SetMetadata("k", "v")
	want := mustBytes(t, m)
	dir := t.TempDir()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				b, err := m.Bytes()
				if err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(b, want) {
					errs <- fmt.Errorf("a reader saw the original change")
					return
				}
				if _, err := m.Weights(); err != nil {
					errs <- err
					return
				}
				if _, err := m.Initializer("W1"); err != nil {
					errs <- err
					return
				}
				_ = m.Nodes()
				_ = m.Metadata()
			}
		}()
	}
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				zero, _ := FromFloat32("W1", Float, []int64{8, 16}, make([]float32, 128))
				d, err := m.With(func(d *Model) error {
					d.SetMetadata("k", fmt.Sprint(i))
					d.SetOpset("", 20)
					d.EnsureNodeNames()
					d.RenameInput("h1", "h1x")
					if err := d.SetInitializer(zero); err != nil {
						return err
					}
					return d.ReplaceNode("mm1", []Node{{Name: "mm1", OpType: "MatMul", Inputs: []string{"X", "W1"}, Outputs: []string{"h1x"}}})
				})
				if err != nil {
					errs <- err
					return
				}
				if err := d.Save(filepath.Join(dir, fmt.Sprintf("d%d.onnx", w)), nil); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if !bytes.Equal(mustBytes(t, m), want) {
		t.Fatal("the original changed")
	}
}
