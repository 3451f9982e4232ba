package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/onnxpost/onnxpost/onnxio"
)

// hostileModel is x[1,2] · W[2,2] with names that try to drive the
// terminal and fake table rows.
func hostileModel(t *testing.T, in, weight, out, op, dim string) *onnxio.Model {
	t.Helper()
	m := onnxio.New("g", 17)
	w, err := onnxio.FromFloat32(weight, onnxio.Float, []int64{2, 2}, []float32{1, 0, 0, 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.SetInitializer(w); err != nil {
		t.Fatal(err)
	}
	m.AddInput(onnxio.ValueInfo{Name: in, DType: onnxio.Float, Shape: []onnxio.Dim{{Param: dim}, {Value: 2}}})
	m.AddOutput(onnxio.ValueInfo{Name: out, DType: onnxio.Float, Shape: []onnxio.Dim{{Param: dim}, {Value: 2}}})
	if err := m.InsertNodes(onnxio.Node{Name: "n", OpType: op, Inputs: []string{in, weight}, Outputs: []string{out}}); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestInspectEscapesNames(t *testing.T) {
	const (
		esc   = "x\x1b[2J\x1b]0;pwned\x07"
		fake  = "w\nw.fake\tMatMul\tMatMul.B\t[9 9]\tfloat\t81\t0.0%"
		pipe  = "y | 1 |"
		bidi  = "op\u202egnp.exe"
		dimNL = "batch\r\nrow"
	)
	m := hostileModel(t, esc, fake, pipe, bidi, dimNL)
	r, err := buildInspect(m)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	printInspect(&buf, "model\x1b[31m.onnx", r)
	text := buf.String()
	for _, bad := range []string{"\x1b", "\x07", "\r", "\u202e", "w.fake\tMatMul", "\nw.fake"} {
		if strings.Contains(text, bad) {
			t.Errorf("inspect output holds %q:\n%s", bad, text)
		}
	}
	for _, want := range []string{`"x\x1b[2J\x1b]0;pwned\a"`, `"w\nw.fake\tMatMul\tMatMul.B\t[9 9]\tfloat\t81\t0.0%"`, `"y | 1 |"`, `"op\u202egnp.exe"`, `"batch\r\nrow"`, `"model\x1b[31m.onnx"`} {
		if !strings.Contains(text, want) {
			t.Errorf("inspect output lacks %s:\n%s", want, text)
		}
	}
	// one line per weight: the fake row did not become a row
	if n := strings.Count(text, "\n"); n != 11 {
		t.Errorf("%d lines:\n%s", n, text)
	}
	// JSON keeps the exact names
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back inspectReport
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Inputs[0].Name != esc || back.Weights[0].Name != fake || back.Outputs[0].Name != pipe {
		t.Errorf("JSON changed the names: %+v", back)
	}
}

func TestDisplayName(t *testing.T) {
	for in, want := range map[string]string{
		"fc1.weight":      "fc1.weight",
		"模型/层.权重":         "模型/层.权重",
		"":                `""`,
		"a b":             `"a b"`,
		"a|b":             `"a|b"`,
		"tab\there":       `"tab\there"`,
		"\xff\xfe":        `"\xff\xfe"`,
		"del\x7f":         `"del\x7f"`,
		"c1\u009b31m":     `"c1\u009b31m"`,
		`back\slash`:      `"back\\slash"`,
		"zero\u200bwidth": `"zero\u200bwidth"`,
	} {
		if got := displayName(in); got != want {
			t.Errorf("displayName(%q) = %s, want %s", in, got, want)
		}
	}
}
