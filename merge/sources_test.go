package merge

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/onnxpost/onnxpost/onnxio"
)

// LoadInputs loads, readies and hashes base and models as the CLI does,
// and Merged records the validated options (defaults filled in) and the
// sources, then merges: the same model as Output + SetProvenance + Model.
func TestLoadInputsAndMerged(t *testing.T) {
	dir := t.TempDir()
	model := func(name string, w ...float32) string {
		m := onnxio.New("tiny", 17)
		m.AddInput(onnxio.ValueInfo{Name: "x", DType: onnxio.Float, Shape: []onnxio.Dim{{Value: 1}, {Value: 2}}})
		tw, _ := onnxio.FromFloat32("W", onnxio.Float, []int64{2, 1}, w)
		if err := m.SetInitializer(tw); err != nil {
			t.Fatal(err)
		}
		if err := m.InsertNodes(onnxio.Node{Name: "mm", OpType: "MatMul", Inputs: []string{"x", "W"}, Outputs: []string{"y"}}); err != nil {
			t.Fatal(err)
		}
		m.AddOutput(onnxio.ValueInfo{Name: "y", DType: onnxio.Float})
		p := filepath.Join(dir, name)
		if err := m.Save(p, nil); err != nil {
			t.Fatal(err)
		}
		return p
	}
	base, a, b := model("base.onnx", 1, 1), model("a.onnx", 2, 1), model("b.onnx", 1, 3)
	in, srcs, err := LoadInputs(base, []string{a, b})
	if err != nil {
		t.Fatal(err)
	}
	if len(srcs) != 3 || srcs[0].Role != "base" || srcs[1].Path != a || len(srcs[2].SHA256) != 64 || len(in.Labels) != 3 {
		t.Fatalf("sources %+v, labels %v", srcs, in.Labels)
	}
	ctx := context.Background()
	mg, err := New(ctx, in, Options{Method: TIES, Density: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := mg.Merged(ctx, srcs)
	if err != nil {
		t.Fatal(err)
	}
	opt := Options{Method: TIES, Density: 1}
	if err := opt.Validate(2, true); err != nil {
		t.Fatal(err)
	}
	want := mg.Output()
	if err := SetProvenance(want, &opt, srcs); err != nil {
		t.Fatal(err)
	}
	if want, err = mg.Model(ctx, want); err != nil {
		t.Fatal(err)
	}
	if !got.Equal(want) {
		t.Fatalf("Merged differs from Output+SetProvenance+Model:\n%v\n%v", got.Metadata(), want.Metadata())
	}
	if p := got.Metadata()[MetaParams]; p != `{"densities":"1,1","lambda":"1","method":"ties","trim_scope":"global","weights":"1,1"}` {
		t.Errorf("params %s", p)
	}
	if _, _, err := LoadInputs(base, []string{filepath.Join(dir, "missing.onnx")}); err == nil || err.Error() != "model "+filepath.Join(dir, "missing.onnx")+" does not exist" {
		t.Errorf("missing model: %v", err)
	}
}
