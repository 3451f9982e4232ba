package onnxio

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestReadSignatureMatchesLoad: the streaming scanner finds the same
// inputs, outputs and data files as a full load.
func TestReadSignatureMatchesLoad(t *testing.T) {
	dir := t.TempDir()
	m := kitchenSink(t, fixtureOpts{hidden: 300})
	m.AddInput(ValueInfo{Name: "W1", DType: Float}) // an initializer listed as an input (IR < 4) is not an input
	for _, ext := range []ExternalMode{ExternalNever, ExternalAlways} {
		out := filepath.Join(dir, fmt.Sprintf("m%d.onnx", ext))
		if err := m.Save(out, &SaveOptions{External: ext}); err != nil {
			t.Fatal(err)
		}
		full, err := Load(out)
		if err != nil {
			t.Fatal(err)
		}
		sig, err := ReadSignature(out)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(sig.Inputs) != fmt.Sprint(full.Inputs()) || fmt.Sprint(sig.Outputs) != fmt.Sprint(full.Outputs()) {
			t.Errorf("%s: signature %v → %v, Load %v → %v", out, sig.Inputs, sig.Outputs, full.Inputs(), full.Outputs())
		}
		locs, err := DataFiles(out)
		if err != nil {
			t.Fatal(err)
		}
		want, _, err := full.ExternalFiles()
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(locs) != fmt.Sprint(want) || (ext == ExternalAlways) != (len(locs) == 1) {
			t.Errorf("%s: DataFiles %v, ExternalFiles %v", out, locs, want)
		}
	}
	// truncated files are errors, not panics
	b, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("m%d.onnx", ExternalNever)))
	for _, n := range []int{1, 7, len(b) / 2, len(b) - 1} {
		p := filepath.Join(dir, "cut.onnx")
		os.WriteFile(p, b[:n], 0o644)
		if _, err := ReadSignature(p); err == nil {
			t.Errorf("a file cut at %d bytes gave no error", n)
		}
	}
}

// TestLoadLazyMatchesLoad: a lazily loaded model reads the same tensors,
// graph and weights as a full load, and serializes to the same bytes.
func TestLoadLazyMatchesLoad(t *testing.T) {
	dir := t.TempDir()
	m := kitchenSink(t, fixtureOpts{hidden: 300})
	defer func(v int64) { lazyThreshold = v }(lazyThreshold)
	lazyThreshold = 1024
	for _, ext := range []ExternalMode{ExternalNever, ExternalAlways} {
		out := filepath.Join(dir, fmt.Sprintf("m%d.onnx", ext))
		if err := m.Save(out, &SaveOptions{External: ext}); err != nil {
			t.Fatal(err)
		}
		full, err := Load(out)
		if err != nil {
			t.Fatal(err)
		}
		lazy, err := LoadLazy(out)
		if err != nil {
			t.Fatal(err)
		}
		lazyCount := 0
		for _, n := range full.Initializers() {
			a, err1 := full.Initializer(n)
			b, err2 := lazy.Initializer(n)
			if err1 != nil || err2 != nil || a.DType != b.DType || !slices.Equal(a.Shape, b.Shape) || string(a.Bytes()) != string(b.Bytes()) {
				t.Errorf("%s: initializer %q differs (%v, %v)", out, n, err1, err2)
			}
			if lazy.IsExternal(n) && !full.IsExternal(n) {
				lazyCount++
			}
		}
		if ext == ExternalNever && lazyCount == 0 {
			t.Errorf("%s: no initializer was left in the file", out)
		}
		sum := func(m *Model) string {
			ws, err := m.Weights()
			out := fmt.Sprint(err)
			for _, w := range ws {
				out += fmt.Sprint(w.Name, w.Role, w.DType, w.Shape, w.Params())
			}
			for _, n := range m.Nodes() {
				out += fmt.Sprint(n.Name, n.OpType, n.Inputs, n.Outputs)
			}
			return out + fmt.Sprint(m.Metadata(), m.Inputs(), m.Outputs())
		}
		if sum(full) != sum(lazy) {
			t.Errorf("%s: weights, nodes or metadata differ:\n%s\n%s", out, sum(full), sum(lazy))
		}
		ba, _ := full.Bytes()
		bb, err := lazy.Bytes()
		if err != nil || string(ba) != string(bb) {
			t.Errorf("%s: Bytes differ (%v)", out, err)
		}
	}
}
