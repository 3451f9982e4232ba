package release

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/onnxio"
)

func needORT(t *testing.T) {
	t.Helper()
	if err := evalharness.Init(""); err != nil {
		t.Skipf("ONNX Runtime not available (run `make ort`): %v", err)
	}
}

// classifier returns y = x·W with W [2,2] (logits of two classes).
func classifier(t *testing.T, w ...float32) *onnxio.Model {
	t.Helper()
	m := onnxio.New("tiny", 17)
	m.AddInput(onnxio.ValueInfo{Name: "x", DType: onnxio.Float, Shape: []onnxio.Dim{{Param: "N"}, {Value: 2}}})
	tw, err := onnxio.FromFloat32("W", onnxio.Float, []int64{2, 2}, w)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.SetInitializer(tw); err != nil {
		t.Fatal(err)
	}
	if err := m.InsertNodes(onnxio.Node{Name: "mm", OpType: "MatMul", Inputs: []string{"x", "W"}, Outputs: []string{"y"}}); err != nil {
		t.Fatal(err)
	}
	m.AddOutput(onnxio.ValueInfo{Name: "y", DType: onnxio.Float, Shape: []onnxio.Dim{{Param: "N"}, {Value: 2}}})
	return m
}

// dataset: 4 samples that the identity classifier gets right.
func dataset(t *testing.T) *evalharness.Dataset {
	t.Helper()
	x := evalharness.FromFloat32([]int64{4, 2}, []float32{1, 0, 0, 1, 2, 1, 1, 3})
	ds, err := evalharness.NewDataset(map[string]*evalharness.Array{"x": x}, []int64{0, 1, 0, 1})
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

// Bad options are refused before anything is read or written.
func TestCommitRefusesBadOptions(t *testing.T) {
	dir := t.TempDir()
	gate, err := evalharness.ParseGate("accuracy>=0.5")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		opt  Options
		want string
	}{
		{"no output", Options{Report: filepath.Join(dir, "r.json")}, "no output path"},
		{"gate without data", Options{Output: filepath.Join(dir, "o.onnx"), Gate: gate, Report: filepath.Join(dir, "r.json")}, `the gate "accuracy>=0.5" needs data`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := Commit(context.Background(), classifier(t, 1, 0, 0, 1), nil, tc.opt)
			if !errors.Is(err, ErrOptions) || !strings.Contains(err.Error(), tc.want) || rep != nil {
				t.Fatalf("got %v, %v; want ErrOptions with %q", rep, err, tc.want)
			}
			if left, _ := os.ReadDir(dir); len(left) != 0 {
				t.Fatalf("wrote %v", left)
			}
		})
	}
}

// A passing gate writes the model, its provenance and both reports; the
// report's JSON has the CLI's keys.
func TestCommitPasses(t *testing.T) {
	needORT(t)
	dir := t.TempDir()
	in := filepath.Join(dir, "in.onnx")
	ref := classifier(t, 1, 0, 0, 1)
	if err := ref.Save(in, nil); err != nil {
		t.Fatal(err)
	}
	gate, _ := evalharness.ParseGate("accuracy_drop<=0")
	ins, err := HashInputs(in, in)
	if err != nil {
		t.Fatal(err)
	}
	cand := classifier(t, 2, 0, 0, 2)
	out, report := filepath.Join(dir, "out.onnx"), filepath.Join(dir, "out.json")
	rep, err := Commit(context.Background(), cand, ref, Options{
		Output: out, Report: report, Data: dataset(t), Gate: gate, Command: "scale",
		Extra:      map[string]any{"factor": 2, "metrics": "taken"},
		Provenance: &Provenance{Version: "v", Inputs: ins},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Passed || rep.Written != out || rep.Saved == nil || rep.Result.Bytes != rep.Saved.Bytes() {
		t.Fatalf("report %+v", rep)
	}
	st, err := os.Stat(out)
	if err != nil || st.Size() != rep.Result.Bytes {
		t.Fatalf("output %v, %d bytes reported", err, rep.Result.Bytes)
	}
	m, err := onnxio.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	md := m.Metadata()
	var recorded []Input
	if err := json.Unmarshal([]byte(md[MetaInputs]), &recorded); err != nil || len(recorded) != 1 || recorded[0].Path != in || len(recorded[0].SHA256) != 64 {
		t.Errorf("inputs %q (%v)", md[MetaInputs], err)
	}
	if md[MetaVersion] != "v" || md[MetaCommand] != "" {
		t.Errorf("metadata %v", md)
	}
	b, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"model", "samples", "metrics", "reference", "gate", "params", "bytes", "command", "output", "outputs", "stats", "factor", "scale_metrics"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("report lacks %q: %s", k, b)
		}
	}
	if doc["output"] != out || doc["command"] != "scale" || doc["params"] != float64(4) {
		t.Errorf("report %s", b)
	}
	if mdText, err := os.ReadFile(MarkdownPath(report)); err != nil || !strings.Contains(string(mdText), "# onnxpost scale") {
		t.Errorf("markdown %q, %v", mdText, err)
	}
	if again, _ := rep.JSON(); string(again) != string(b) {
		t.Errorf("Report.JSON differs from the file written")
	}
}

// A failing gate writes nothing at the output, keeps the rejected
// candidate when asked, writes the report and returns a *GateError.
func TestCommitGateFails(t *testing.T) {
	needORT(t)
	gate, _ := evalharness.ParseGate("accuracy>=0.9")
	for _, keep := range []bool{false, true} {
		dir := t.TempDir()
		out, report, kept := filepath.Join(dir, "out.onnx"), filepath.Join(dir, "r.json"), ""
		if keep {
			kept = filepath.Join(dir, "rejected.onnx")
		}
		ref := classifier(t, 1, 0, 0, 1)
		rep, err := Commit(context.Background(), classifier(t, 0, 1, 1, 0), ref, Options{
			Output: out, KeepRejected: kept, Report: report, Data: dataset(t), Gate: gate,
		})
		var ge *GateError
		if !errors.As(err, &ge) || !errors.Is(err, ErrGateFailed) || !strings.HasSuffix(err.Error(), out+" not written") {
			t.Fatalf("keep=%v: error %v", keep, err)
		}
		if _, err := os.Stat(out); !os.IsNotExist(err) {
			t.Errorf("keep=%v: output written (%v)", keep, err)
		}
		if rep == nil || rep.Passed || rep.Written != kept {
			t.Fatalf("keep=%v: report %+v", keep, rep)
		}
		b, err := os.ReadFile(report)
		if err != nil {
			t.Fatal(err)
		}
		var doc map[string]any
		_ = json.Unmarshal(b, &doc)
		if doc["output"] != "" || (keep && doc["rejected_output"] != kept) || (!keep && doc["rejected_output"] != nil) {
			t.Errorf("keep=%v: report %s", keep, b)
		}
		if keep {
			if _, err := os.Stat(kept); err != nil {
				t.Errorf("rejected candidate not kept: %v", err)
			}
		}
	}
}

// A report that cannot be written fails the commit before the model is
// written.
func TestCommitUnwritableReport(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out.onnx")
	_, err := Commit(context.Background(), classifier(t, 1, 0, 0, 1), nil, Options{
		Output: out, Report: filepath.Join(dir, "missing", "r.json"),
	})
	if err == nil || !strings.Contains(err.Error(), "writing the report") {
		t.Fatalf("got %v", err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatalf("output written (%v)", err)
	}
}

// A cancelled context writes nothing.
func TestCommitCancelled(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	out := filepath.Join(dir, "out.onnx")
	if _, err := Commit(ctx, classifier(t, 1, 0, 0, 1), nil, Options{Output: out, Report: filepath.Join(dir, "r.json")}); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Fatalf("wrote %v", left)
	}
}

// Provenance records inputs once each, ordered by path, whatever the order
// given; a model with external data has its data file hashed too.
func TestProvenanceInputs(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.onnx"), filepath.Join(dir, "b.onnx")
	if err := classifier(t, 1, 0, 0, 1).Save(a, nil); err != nil {
		t.Fatal(err)
	}
	if err := classifier(t, 1, 0, 0, 1).Save(b, &onnxio.SaveOptions{External: onnxio.ExternalAlways, Threshold: 1}); err != nil {
		t.Fatal(err)
	}
	record := func(paths ...string) string {
		ins, err := HashInputs(paths...)
		if err != nil {
			t.Fatal(err)
		}
		m := classifier(t, 1, 0, 0, 1)
		if err := (&Provenance{Inputs: ins}).Record(m); err != nil {
			t.Fatal(err)
		}
		return m.Metadata()[MetaInputs]
	}
	x, y := record(b, a, b), record(a, b)
	if x != y {
		t.Fatalf("order changed the record:\n%s\n%s", x, y)
	}
	var ins []Input
	if err := json.Unmarshal([]byte(x), &ins); err != nil || len(ins) != 2 || ins[0].Path != a || ins[1].Data == nil {
		t.Fatalf("record %s (%v)", x, err)
	}
	var nilProv *Provenance
	m := classifier(t, 1, 0, 0, 1)
	if err := nilProv.Record(m); err != nil || len(m.Metadata()) != 0 {
		t.Fatalf("nil provenance recorded %v (%v)", m.Metadata(), err)
	}
	if _, err := HashInputs(filepath.Join(dir, "missing.onnx")); err == nil {
		t.Fatal("a missing input was hashed")
	}
}

// TestLoadCheckFromFile: the path used for models too large to serialize
// in memory (a save with external data in a temporary folder) accepts a
// good model, refuses a bad one and leaves nothing behind.
func TestLoadCheckFromFile(t *testing.T) {
	needORT(t)
	good := classifier(t, 1, 0, 0, 1)
	tmp := t.TempDir()
	s, err := sessionFromTempSave(good, evalharness.SessionOptions{}, tmp)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	bad := good.Clone()
	if err := bad.RemoveInitializer("W"); err != nil {
		t.Fatal(err)
	}
	if _, err := sessionFromTempSave(bad, evalharness.SessionOptions{}, tmp); err == nil {
		t.Fatal("a model without its weight loaded")
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Fatalf("left %v", left)
	}
}

// Evaluate measures and gates like Commit but writes nothing (not even
// with Output, Report or KeepRejected set) and leaves the candidate's
// metadata alone; gate conditions without data are refused.
func TestEvaluate(t *testing.T) {
	gate, _ := evalharness.ParseGate("accuracy>=0.9")
	if _, err := Evaluate(context.Background(), classifier(t, 1, 0, 0, 1), nil, Options{Gate: gate}); !errors.Is(err, ErrOptions) {
		t.Fatalf("gate without data: err = %v", err)
	}
	needORT(t)
	ref := classifier(t, 1, 0, 0, 1)
	for _, tc := range []struct {
		name   string
		w      []float32
		passed bool
	}{
		{"passes", []float32{1, 0, 0, 1}, true},
		{"fails", []float32{0, 1, 1, 0}, false},
	} {
		dir := t.TempDir()
		cand := classifier(t, tc.w...)
		rep, err := Evaluate(context.Background(), cand, ref, Options{
			Output: filepath.Join(dir, "out.onnx"), Report: filepath.Join(dir, "r.json"), KeepRejected: filepath.Join(dir, "k.onnx"),
			Data: dataset(t), Gate: gate, Command: "step", Provenance: &Provenance{Version: "v"},
		})
		if tc.passed != (err == nil) || !tc.passed && !errors.Is(err, ErrGateFailed) {
			t.Fatalf("%s: err = %v", tc.name, err)
		}
		if rep == nil || rep.Passed != tc.passed || rep.Written != "" || rep.Result.Reference == nil || rep.Result.Params != 4 {
			t.Fatalf("%s: report %+v", tc.name, rep)
		}
		if want := map[bool]float64{true: 1, false: 0}[tc.passed]; rep.Result.Metrics["accuracy"] != want {
			t.Errorf("%s: accuracy %v, want %v", tc.name, rep.Result.Metrics["accuracy"], want)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Errorf("%s: Evaluate wrote %d files", tc.name, len(ents))
		}
		if len(cand.Metadata()) != 0 {
			t.Errorf("%s: the candidate's metadata changed: %v", tc.name, cand.Metadata())
		}
	}
}
