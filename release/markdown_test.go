package release

import (
	"strings"
	"testing"
)

func TestMarkdown(t *testing.T) {
	doc := `{"command":"sparsify","output":"out.onnx","params":17226,"bytes":70000,"samples":360,
	"metrics":{"accuracy":0.9,"kl":0.01},"reference":{"metrics":{"accuracy":0.96}},
	"gate":{"expr":"accuracy_drop<=0.1","passed":true},
	"layers":[{"weight":"fc1.weight","sparsity":0.5},{"weight":"fc2.weight","sparsity":0.5}],
	"pattern":"2:4"}`
	md, err := Markdown([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"# onnxpost sparsify", "Output: `out.onnx`", "Gate `accuracy_drop<=0.1`: **passed**",
		"| accuracy | 0.9 | 0.96 |", "| sparsity | weight |", "| 0.5 | fc2.weight |", "- pattern: 2:4",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	rejected := `{"command":"merge","output":"","rejected_output":"kept.onnx","gate":{"expr":"accuracy>=0.99","passed":false}}`
	md, err = Markdown([]byte(rejected))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(md, "gate failed") || !strings.Contains(md, "**failed**") {
		t.Errorf("a failed gate is not visible:\n%s", md)
	}
	if _, err := Markdown([]byte("{")); err == nil {
		t.Error("bad JSON accepted")
	}
}
