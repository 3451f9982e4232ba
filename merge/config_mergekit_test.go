package merge

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/onnxpost/onnxpost/onnxio"
)

// runConfig parses yaml (paths {Z} replaced by the zoo transformer's
// folder), merges in memory and returns the merger, the merged model and
// the config.
func runConfig(t *testing.T, yaml string) (*Merger, *onnxio.Model, *Config) {
	t.Helper()
	zoo := filepath.Join(zooDir(), "transformer")
	if _, err := os.Stat(filepath.Join(zoo, "base.onnx")); err != nil {
		t.Skipf("zoo model missing (make zoo): %v", err)
	}
	c, err := ParseConfig(strings.NewReader(strings.ReplaceAll(yaml, "{Z}", zoo)), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	opt, err := c.Options()
	if err != nil {
		t.Fatal(err)
	}
	in := Inputs{}
	if c.Base != "" {
		if in.Base, err = onnxio.Load(c.Base); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range c.Paths() {
		m, err := onnxio.Load(p)
		if err != nil {
			t.Fatal(err)
		}
		in.Models = append(in.Models, m)
	}
	mg, err := New(context.Background(), in, opt, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := mg.Model(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return mg, out, c
}

func tensor64(t *testing.T, m *onnxio.Model, name string) []float64 {
	t.Helper()
	x, err := m.Initializer(name)
	if err != nil {
		t.Fatal(err)
	}
	v, err := view64(x)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func loadZoo(t *testing.T, n string) *onnxio.Model {
	t.Helper()
	m, err := onnxio.Load(filepath.Join(zooDir(), "transformer", n+".onnx"))
	if err != nil {
		t.Skipf("zoo model missing (make zoo): %v", err)
	}
	return m
}

// TestMergekitExampleLinear runs mergekit's examples/linear.yml shape.
func TestMergekitExampleLinear(t *testing.T) {
	_, out, c := runConfig(t, `
models:
  - model: {Z}/ft_low.onnx
    parameters:
      weight: 1.0
  - model: {Z}/ft_high.onnx
    parameters:
      weight: 0.3
  - model: {Z}/ft_shift.onnx
    parameters:
      weight: 0.5
merge_method: linear
dtype: float16
`)
	if len(c.Notes) != 0 || c.OutputDtype() != "fp16" {
		t.Errorf("notes %q, output dtype %q (want none, fp16)", c.Notes, c.OutputDtype())
	}
	a, b, d := loadZoo(t, "ft_low"), loadZoo(t, "ft_high"), loadZoo(t, "ft_shift")
	for _, n := range []string{"blocks.0.q.weight", "head.bias"} {
		got, x, y, z := tensor64(t, out, n), tensor64(t, a, n), tensor64(t, b, n), tensor64(t, d, n)
		for j := range got {
			want := (1*x[j] + 0.3*y[j] + 0.5*z[j]) / 1.8
			if math.Abs(got[j]-want) > 1e-6*math.Max(1, math.Abs(want)) {
				t.Fatalf("%s[%d] = %v, want %v", n, j, got[j], want)
			}
		}
	}
}

// TestMergekitExampleTies runs mergekit's examples/ties.yml shape:
// density and weight gradients and a filtered weight, evaluated on the
// transformer's two layers.
func TestMergekitExampleTies(t *testing.T) {
	mg, out, c := runConfig(t, `
models:
  - model: {Z}/ft_low.onnx
    parameters:
      density: [1, 0.7, 0.1] # density gradient
      weight: 1.0
  - model: {Z}/ft_high.onnx
    parameters:
      density: 0.5
      weight: [0, 0.3, 0.7, 1] # weight gradient
  - model: {Z}/ft_shift.onnx
    parameters:
      density: 0.33
      weight:
        - filter: mlp
          value: 0.5
        - value: 0
merge_method: ties
base_model: {Z}/base.onnx
parameters:
  normalize: true
  int8_mask: true
dtype: float16
`)
	if !slices.ContainsFunc(c.Notes, func(s string) bool { return strings.Contains(s, "trims per tensor") }) {
		t.Errorf("notes %q lack the trim-scope note", c.Notes)
	}
	cases := []struct {
		name    string
		weights []float64
		dens    []float64
	}{
		{"embed.weight", []float64{1, 0, 0}, []float64{1, 0.5, 0.33}},          // outside the layers: t = 0
		{"blocks.0.q.weight", []float64{1, 0, 0}, []float64{1, 0.5, 0.33}},     // layer 0 attention
		{"blocks.0.ff1.weight", []float64{1, 0, 0.5}, []float64{1, 0.5, 0.33}}, // layer 0 mlp
		{"blocks.1.ff2.bias", []float64{1, 1, 0.5}, []float64{0.1, 0.5, 0.33}}, // layer 1 mlp (t = 1)
		{"blocks.1.ln1.weight", []float64{1, 1, 0}, []float64{0.1, 0.5, 0.33}}, // input_layernorm
		{"head.weight", []float64{1, 0, 0}, []float64{1, 0.5, 0.33}},           // lm_head: t = 0
	}
	base := loadZoo(t, "base")
	fts := []*onnxio.Model{loadZoo(t, "ft_low"), loadZoo(t, "ft_high"), loadZoo(t, "ft_shift")}
	for _, tc := range cases {
		o := mg.optionsFor(&mg.plan[mg.index[tc.name]])
		if !slices.EqualFunc(o.Weights, tc.weights, close6) || !slices.EqualFunc(o.Densities, tc.dens, close6) {
			t.Errorf("%s: weights %v densities %v, want %v %v", tc.name, o.Weights, o.Densities, tc.weights, tc.dens)
			continue
		}
		// independent per-tensor TIES: keep the k = max(1, ⌊d·n⌋) largest
		// |τ| (ties kept), elect the sign of the sum, weighted disjoint mean
		b := tensor64(t, base, tc.name)
		taus := make([][]float64, 3)
		for i, m := range fts {
			x := tensor64(t, m, tc.name)
			taus[i] = make([]float64, len(b))
			abs := make([]float64, len(b))
			for j := range b {
				taus[i][j] = x[j] - b[j]
				abs[j] = math.Abs(taus[i][j])
			}
			slices.Sort(abs)
			k := max(1, int(math.Floor(tc.dens[i]*float64(len(b)))))
			thr := abs[len(abs)-k]
			for j := range b {
				if math.Abs(taus[i][j]) < thr {
					taus[i][j] = 0
				}
			}
		}
		got := tensor64(t, out, tc.name)
		for j := range b {
			s := taus[0][j] + taus[1][j] + taus[2][j]
			num, den := 0.0, 0.0
			for i := range taus {
				if taus[i][j] != 0 && (taus[i][j] > 0) == (s >= 0) {
					num += tc.weights[i] * taus[i][j]
					den += tc.weights[i]
				}
			}
			want := b[j]
			if den != 0 {
				want += num / den
			}
			if math.Abs(got[j]-want) > 1e-6*math.Max(1e-3, math.Abs(want)) {
				t.Fatalf("%s[%d] = %v, want %v", tc.name, j, got[j], want)
			}
		}
	}
}

func close6(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

// TestMergekitExampleGradientSlerp runs mergekit's
// examples/gradient-slerp.yml shape: slices over all layers, the base also
// listed as a source, t filtered by self_attn / mlp with gradients.
func TestMergekitExampleGradientSlerp(t *testing.T) {
	_, out, c := runConfig(t, `
slices:
  - sources:
      - model: {Z}/ft_low.onnx
        layer_range: [0, 2]
      - model: {Z}/ft_high.onnx
        layer_range: [0, 2]
merge_method: slerp
base_model: {Z}/ft_low.onnx
parameters:
  t:
    - filter: self_attn
      value: [0, 0.5, 0.3, 0.7, 1]
    - filter: mlp
      value: [1, 0.5, 0.7, 0.3, 0]
    - value: 0.5 # fallback for rest of tensors
dtype: float16
`)
	if len(c.Models) != 1 {
		t.Fatalf("models %v: the base should be taken out", c.Paths())
	}
	a, b := loadZoo(t, "ft_low"), loadZoo(t, "ft_high")
	for name, want := range map[string]*onnxio.Model{
		"blocks.0.q.weight":   a, // self_attn, t = 0
		"blocks.0.ff1.weight": b, // mlp, t = 1
		"blocks.1.k.bias":     b, // self_attn, t = 1
		"blocks.1.ff2.weight": a, // mlp, t = 0
	} {
		got, w := tensor64(t, out, name), tensor64(t, want, name)
		for j := range got {
			if math.Abs(got[j]-w[j]) > 1e-6*math.Max(1e-3, math.Abs(w[j])) {
				t.Fatalf("%s[%d] = %v, want %v", name, j, got[j], w[j])
			}
		}
	}
	// the fallback t = 0.5 for the head: SLERP of the two heads
	n := "head.weight"
	x, y := tensor64(t, a, n), tensor64(t, b, n)
	dst := make([]float64, len(x))
	SLERPTo(dst, x, y, 0.5)
	got := tensor64(t, out, n)
	for j := range got {
		if math.Abs(got[j]-dst[j]) > 1e-6*math.Max(1e-3, math.Abs(dst[j])) {
			t.Fatalf("%s[%d] = %v, want %v", n, j, got[j], dst[j])
		}
	}
}

// TestMergekitExampleBioMerge runs mergekit's examples/bio-merge.yml shape:
// TIES with per-model density and weight and normalize: false (the
// disjoint sum).
func TestMergekitExampleBioMerge(t *testing.T) {
	_, out, _ := runConfig(t, `
models:
  - model: {Z}/ft_low.onnx
    parameters:
      density: 0.5
      weight: 0.5
  - model: {Z}/ft_high.onnx
    parameters:
      density: 0.5
      weight: 0.5
merge_method: ties
base_model: {Z}/base.onnx
parameters:
  normalize: false
  int8_mask: true
dtype: float16
`)
	// global trim (onnxpost's default): thresholds over all merged tensors
	base := loadZoo(t, "base")
	fts := []*onnxio.Model{loadZoo(t, "ft_low"), loadZoo(t, "ft_high")}
	var names []string
	for _, n := range base.Initializers() {
		if dt, _, _ := base.InitializerInfo(n); dt.IsFloat() {
			names = append(names, n)
		}
	}
	thr := make([]float64, 2)
	for i, m := range fts {
		var all []float64
		for _, n := range names {
			b, x := tensor64(t, base, n), tensor64(t, m, n)
			for j := range b {
				all = append(all, math.Abs(x[j]-b[j]))
			}
		}
		slices.Sort(all)
		thr[i] = all[len(all)-max(1, int(math.Floor(0.5*float64(len(all)))))]
	}
	for _, n := range []string{"blocks.0.v.weight", "ln.bias"} {
		b := tensor64(t, base, n)
		got := tensor64(t, out, n)
		x0, x1 := tensor64(t, fts[0], n), tensor64(t, fts[1], n)
		for j := range b {
			t0, t1 := x0[j]-b[j], x1[j]-b[j]
			if math.Abs(t0) < thr[0] {
				t0 = 0
			}
			if math.Abs(t1) < thr[1] {
				t1 = 0
			}
			pos := t0+t1 >= 0
			want := b[j]
			for _, tv := range []float64{t0, t1} {
				if tv != 0 && (tv > 0) == pos {
					want += 0.5 * tv
				}
			}
			if math.Abs(got[j]-want) > 1e-6*math.Max(1e-3, math.Abs(want)) {
				t.Fatalf("%s[%d] = %v, want %v", n, j, got[j], want)
			}
		}
	}
}

// TestMergekitConfigRefusals: unknown keys, parameters a method does not
// take and unsupported combinations are refused by name while parsing,
// before any model is read (the paths do not even exist).
func TestMergekitConfigRefusals(t *testing.T) {
	cases := []struct{ name, yaml, want string }{
		{"passthrough with models", "merge_method: passthrough\nmodels: [{model: a.onnx}]\n", "passthrough: list the layers as slices"},
		{"passthrough two sources", "merge_method: passthrough\nslices:\n  - sources: [{model: a, layer_range: [0, 2]}, {model: b, layer_range: [0, 2]}]\n", "slice 1 lists 2 sources: passthrough takes one per slice"},
		{"passthrough base", "merge_method: passthrough\nbase_model: b\nslices:\n  - sources: [{model: a, layer_range: [0, 2]}]\n", "passthrough: takes no base_model"},
		{"passthrough parameters", "merge_method: passthrough\nparameters: {scale: 0.5, seed: 3}\nslices:\n  - sources: [{model: a, layer_range: [0, 2]}]\n", "takes no parameters (mergekit's scale is not supported either); got scale, seed"},
		{"passthrough source parameters", "merge_method: passthrough\nslices:\n  - sources: [{model: a, layer_range: [0, 2], parameters: {weight: 1}}]\n", "slice 1: the source takes no parameters"},
		{"passthrough empty range", "merge_method: passthrough\nslices:\n  - sources: [{model: a, layer_range: [2, 2]}]\n", "slice 1: layer_range [2 2]: want [start, end] with 0 ≤ start < end"},
		{"passthrough no range", "merge_method: passthrough\nslices:\n  - sources: [{model: a}]\n", "slice 1: layer_range []"},
		{"two slices", "merge_method: linear\nslices:\n  - sources: [{model: a, layer_range: [0, 2]}]\n  - sources: [{model: b, layer_range: [2, 4]}]\n", "2 slices with merge_method linear: only passthrough stacks slices"},
		{"passthrough as flag-style method", "method: passthrough\nmodels: [{model: a}]\n", "passthrough: list the layers as slices"},
		{"partial range", "merge_method: linear\nslices:\n  - sources: [{model: a, layer_range: [0, 2]}, {model: b, layer_range: [1, 3]}]\n", "layer_range [1 3]"},
		{"out_dtype", "merge_method: linear\nmodels: [{model: a}]\nout_dtype: bfloat16\n", `out_dtype "bfloat16" is not supported`},
		{"modules", "merge_method: linear\nmodules: {text: {}}\nmodels: [{model: a}]\n", "modules (multi-module merges) are not supported"},
		{"gamma on ties", "merge_method: ties\nbase_model: b\nmodels: [{model: a, parameters: {gamma: 0.1}}]\n", `method ties has no parameter "gamma"`},
		{"global param per model", "merge_method: della\nbase_model: b\nmodels: [{model: a, parameters: {lambda: 2}}]\n", "parameter lambda is global, not per model"},
		{"bool gradient", "merge_method: della\nbase_model: b\nmodels: [{model: a}]\nparameters: {normalize: [0, 1]}\n", "parameter normalize is a bool: it cannot vary by tensor"},
		{"filter key typo", "merge_method: linear\nmodels: [{model: a, parameters: {weight: [{filtr: mlp, value: 1}]}}]\n", `unknown key "filtr"`},
		{"unknown top key", "merge_method: linear\nmodels: [{model: a}]\ntokenizer_sauce: base\n", "field tokenizer_sauce not found"},
		{"bad dtype", "merge_method: linear\nmodels: [{model: a}]\ndtype: int4\n", `dtype "int4"`},
		{"nearswap without t", "merge_method: nearswap\nbase_model: b\nmodels: [{model: a}]\n", ""},
		{"della epsilon too wide", "merge_method: della\nbase_model: b\nmodels: [{model: a, parameters: {density: 0.1, epsilon: 0.2}}]\n", ""},
		{"dare_ties normalize false", "merge_method: dare_ties\nbase_model: b\nmodels: [{model: a}]\nparameters: {normalize: false}\n", "dare-ties takes normalize: true only"},
		{"bad rescale", "merge_method: dare_linear\nbase_model: b\nmodels: [{model: a}]\nparameters: {rescale: maybe}\n", `parameter rescale: "maybe" is not a bool`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig(strings.NewReader(tc.yaml), t.TempDir())
			if tc.want == "" { // caught by Validate, still before any read
				if err != nil {
					t.Fatalf("parse: %v", err)
				}
				o, err := c.Options()
				if err == nil {
					err = o.Validate(len(c.Models), c.Base != "")
				}
				if err == nil || !errors.Is(err, ErrOptions) {
					t.Fatalf("error %v, want an ErrOptions", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrOptions) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// TestMergekitConfigNotes: tokenizer_source and int8_mask are accepted
// and noted.
func TestMergekitConfigNotes(t *testing.T) {
	c, err := ParseConfig(strings.NewReader("merge_method: ties\nbase_model: b\nmodels: [{model: a}]\ntokenizer_source: union\nparameters: {int8_mask: true}\n"), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(c.Notes, "\n")
	for _, want := range []string{"tokenizer_source is ignored", "int8_mask changes nothing"} {
		if !strings.Contains(joined, want) {
			t.Errorf("notes %q lack %q", c.Notes, want)
		}
	}
}

// TestMergekitGradientNeedsLayers: a gradient on a model without residual
// blocks (the zoo MLP) is refused by New, before any tensor is merged.
func TestMergekitGradientNeedsLayers(t *testing.T) {
	dir := filepath.Join(zooDir(), "mlp")
	if _, err := os.Stat(filepath.Join(dir, "base.onnx")); err != nil {
		t.Skip("zoo missing")
	}
	c, err := ParseConfig(strings.NewReader("merge_method: linear\nmodels:\n  - model: "+dir+"/ft_low.onnx\n    parameters: {weight: [0, 1]}\n  - model: "+dir+"/ft_high.onnx\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	opt, err := c.Options()
	if err != nil {
		t.Fatal(err)
	}
	var in Inputs
	for _, p := range c.Paths() {
		m, err := onnxio.Load(p)
		if err != nil {
			t.Fatal(err)
		}
		in.Models = append(in.Models, m)
	}
	_, err = New(context.Background(), in, opt, nil)
	if err == nil || !errors.Is(err, ErrOptions) || !strings.Contains(err.Error(), "has none (no residual block") {
		t.Fatalf("error %v", err)
	}
}
