package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/onnxpost/onnxpost/onnxio"
	"github.com/onnxpost/onnxpost/release"
)

// stepFixture copies the zoo MLP's base and two fine-tunes, and the union
// data (val.npz, test.npz) into a fresh folder.
func stepFixture(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for dst, src := range map[string][]string{
		"base.onnx": {"zoo", "mlp", "base.onnx"}, "ft_low.onnx": {"zoo", "mlp", "ft_low.onnx"},
		"ft_high.onnx": {"zoo", "mlp", "ft_high.onnx"},
		"val.npz":      {"data", "digits_union_val.npz"}, "test.npz": {"data", "digits_union_test.npz"},
	} {
		b, err := os.ReadFile(zooPath(t, src...))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, dst), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// withoutCallerProvenance returns the serialized model b without its
// metadata entries onnxpost.version, onnxpost.command and
// onnxpost.inputs: the provenance of whoever committed it (a command
// records its command line and arguments, a recipe the files the recipe
// reads; the version's entry sits where the first command of a chain put
// it). Every other byte is kept, in order.
func withoutCallerProvenance(t *testing.T, b []byte) []byte {
	t.Helper()
	var out []byte
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			t.Fatalf("not a model: %v", protowire.ParseError(n))
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			t.Fatalf("not a model: %v", protowire.ParseError(m))
		}
		field := b[:n+m]
		b = b[n+m:]
		if num == 14 && typ == protowire.BytesType { // ModelProto.metadata_props
			entry, _ := protowire.ConsumeBytes(field[n:])
			_, _, k := protowire.ConsumeTag(entry)
			key, _ := protowire.ConsumeString(entry[k:])
			if key == release.MetaCommand || key == release.MetaInputs || key == release.MetaVersion {
				continue
			}
		}
		out = append(out, field...)
	}
	return out
}

// modelBytes serializes the model at path with every tensor inline (its
// external data read back), without the caller's provenance.
func modelBytes(t *testing.T, path string) []byte {
	t.Helper()
	m, err := onnxio.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return withoutCallerProvenance(t, b)
}

// volatileKeys are the keys of a result that name where a model was
// written or read, its size on disk (which holds the caller's provenance)
// or a time.
var volatileKeys = map[string]bool{"model": true, "output": true, "bytes": true, "input_bytes": true,
	"seconds": true, "examples_per_s": true, "latency_p50_ms": true, "latency_p90_ms": true, "throughput": true}

// comparable is a JSON result without volatileKeys, at any depth.
func comparable(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			if !volatileKeys[k] && !strings.HasSuffix(k, "seconds") && !strings.HasSuffix(k, "_per_second") {
				out[k] = comparable(e)
			}
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = comparable(e)
		}
		return out
	}
	return v
}

func readJSON(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v
}

// A recipe of each step that used to run through the command line's
// argv (soup, greedy soup, search, eval, fisher, merge with a config,
// merge with an alignment, a step with external-data) now runs in
// process through the commands' library entry points, and gives what
// the same commands run one by one give: the same model bytes (the
// provenance entries naming the caller aside: a command records its
// command line, a recipe the files it reads) and the same step results
// (paths, sizes on disk and times aside).
func TestRecipeStepsEqualCommands(t *testing.T) {
	requireORT(t)
	if testing.Short() {
		t.Skip("runs every command twice")
	}
	const config = `merge_method: ties
base_model: base.onnx
models:
  - model: ft_low.onnx
    parameters: {weight: 1, density: 0.5}
  - model: ft_high.onnx
    parameters: {weight: 0.5, density: 0.3}
parameters: {lambda: 0.9}
`
	for _, tc := range []struct {
		name string
		// recipe is the recipe's head and steps; cmds the same chain as
		// commands, "{dir}" the folder, "{out}" the last command's
		// output, "{prev}" the previous command's, "{report}" each
		// command's report.
		recipe string
		cmds   [][]string
		// fisher: the chain ends with a Fisher file, which the recipe
		// cannot commit (it does not load in ONNX Runtime); its workdir
		// copy is compared instead.
		fisher bool
	}{
		{name: "soup", recipe: "steps:\n  - soup: {inputs: [ft_low.onnx, ft_high.onnx]}\n",
			cmds: [][]string{{"soup", "{dir}/ft_low.onnx", "{dir}/ft_high.onnx"}}},
		{name: "greedy soup then int8", recipe: "data: test.npz\nsteps:\n  - soup: {greedy: true, inputs: [ft_low.onnx, ft_high.onnx, base.onnx]}\n  - quantize: {weights: int8}\n",
			cmds: [][]string{{"soup", "--greedy", "--data", "{dir}/test.npz", "{dir}/ft_low.onnx", "{dir}/ft_high.onnx", "{dir}/base.onnx"},
				{"quantize", "--weights", "int8", "--data", "{dir}/test.npz", "{prev}"}}},
		{name: "search", recipe: "steps:\n  - search: {target: 0.5, calib: val.npz, generations: 2, offspring: 2, levels: 2, tokens: \"16:64\", inputs: [base.onnx]}\n",
			cmds: [][]string{{"search", "--target", "0.5", "--calib", "{dir}/val.npz", "--generations", "2", "--offspring", "2", "--levels", "2", "--tokens", "16:64", "{dir}/base.onnx"}}},
		{name: "eval then 2:4", recipe: "steps:\n  - eval: {data: test.npz, metrics: \"accuracy,top5\", inputs: [ft_low.onnx]}\n  - sparsify: {pattern: \"2:4\"}\n",
			cmds: [][]string{{"eval", "--data", "{dir}/test.npz", "--metrics", "accuracy,top5", "{dir}/ft_low.onnx"},
				{"sparsify", "--pattern", "2:4", "{dir}/ft_low.onnx"}}},
		{name: "fisher", recipe: "workdir: work\nsteps:\n  - fisher: {data: val.npz, max-examples: 8, samples: 1, inputs: [base.onnx]}\n", fisher: true,
			cmds: [][]string{{"fisher", "--data", "{dir}/val.npz", "--max-examples", "8", "--samples", "1", "{dir}/base.onnx"}}},
		{name: "merge config", recipe: "data: test.npz\nsteps:\n  - merge: {config: m.yaml}\n",
			cmds: [][]string{{"merge", "--config", "{dir}/m.yaml", "--data", "{dir}/test.npz"}}},
		{name: "merge align", recipe: "steps:\n  - merge: {method: linear, align: weights, seed: 3, inputs: [ft_low.onnx, ft_high.onnx]}\n",
			cmds: [][]string{{"merge", "--method", "linear", "--align", "weights", "--seed", "3", "{dir}/ft_low.onnx", "{dir}/ft_high.onnx"}}},
		{name: "external data", recipe: "external-data: true\nworkdir: work\nsteps:\n  - sparsify: {pattern: \"2:4\", external-data: true, inputs: [ft_high.onnx]}\n  - quantize: {weights: int8, external-data: true}\n",
			cmds: [][]string{{"sparsify", "--pattern", "2:4", "--external-data", "{dir}/ft_high.onnx"},
				{"quantize", "--weights", "int8", "--external-data", "{prev}"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := stepFixture(t)
			if err := os.WriteFile(filepath.Join(dir, "m.yaml"), []byte(config), 0o644); err != nil {
				t.Fatal(err)
			}
			recipe := filepath.Join(dir, "r.yaml")
			if err := os.WriteFile(recipe, []byte("output: out.onnx\nreport: r.json\n"+tc.recipe), 0o644); err != nil {
				t.Fatal(err)
			}
			want := 0
			if tc.fisher {
				want = 1 // the final commit refuses a model that does not load
			}
			if code := run([]string{"onnxpost", "run", recipe}); code != want {
				t.Fatalf("run: exit code %d, want %d", code, want)
			}
			rep := readJSON(t, filepath.Join(dir, "r.json"))
			steps, _ := rep["steps"].([]any)
			if len(steps) != len(tc.cmds) {
				t.Fatalf("%d steps reported, want %d", len(steps), len(tc.cmds))
			}

			cdir := t.TempDir()
			prev, out := "", ""
			for i, c := range tc.cmds {
				out = filepath.Join(cdir, "step"+string(rune('1'+i))+".onnx")
				report := filepath.Join(cdir, "step"+string(rune('1'+i))+".json")
				args := []string{"onnxpost"}
				for _, a := range c {
					a = strings.ReplaceAll(a, "{dir}", dir)
					a = strings.ReplaceAll(a, "{prev}", prev)
					args = append(args, a)
				}
				if c[0] != "eval" {
					args = append(args, "-o", out)
				} else {
					out = prev
				}
				args = append(args, "--report", report)
				if code := run(args); code != 0 {
					t.Fatalf("%v: exit code %d", args, code)
				}
				if c[0] == "eval" {
					out = filepath.Join(dir, "ft_low.onnx") // eval hands its input on
				}
				got, _ := steps[i].(map[string]any)["result"].(map[string]any)
				if w := comparable(readJSON(t, report)); !reflect.DeepEqual(comparable(got), w) {
					gb, _ := json.MarshalIndent(comparable(got), "", " ")
					wb, _ := json.MarshalIndent(w, "", " ")
					t.Errorf("step %d (%s): the recipe's result differs from the command's:\nrecipe  %s\ncommand %s", i+1, c[0], gb, wb)
				}
				prev = out
			}
			final := filepath.Join(dir, "out.onnx")
			if tc.fisher {
				final = filepath.Join(dir, "work", "step01-fisher.onnx")
			}
			if got, want := modelBytes(t, final), modelBytes(t, out); !bytes.Equal(got, want) {
				t.Errorf("the recipe's model (%d bytes) differs from the commands' (%d bytes)", len(got), len(want))
			}
			if !tc.fisher && !strings.Contains(tc.recipe, "external-data") {
				// inline outputs: the files themselves, not a re-serialization
				raw := func(p string) []byte {
					b, err := os.ReadFile(p)
					if err != nil {
						t.Fatal(err)
					}
					return withoutCallerProvenance(t, b)
				}
				if !bytes.Equal(raw(final), raw(out)) {
					t.Errorf("the recipe's output file differs from the commands'")
				}
			}
		})
	}
}
