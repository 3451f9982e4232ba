package main

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/onnxpost/onnxpost/compress/sparsity"
	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/quant"
)

// TestFlagWords: the library's words become flags only where they name a
// declared parameter or a known option field; recipes (run) keep the
// parameter names, which are their keys.
func TestFlagWords(t *testing.T) {
	for _, c := range []struct{ in, flags, recipe string }{
		{"raise the damp parameter", "raise --damp", "raise the damp parameter"},
		{"the method parameter gptq needs calibration data (Options.Calibration)", "--method gptq needs calibration data (--calib)", "the method parameter gptq needs calibration data (calib)"},
		{"int8 weights support the format parameter qdq only", "int8 weights support --format qdq only", "int8 weights support the format parameter qdq only"},
		{"the rank-ratio parameter and the calib-samples parameter", "--rank-ratio and --calib-samples", "the rank-ratio parameter and the calib-samples parameter"},
		// not a declared parameter: left alone
		{"the frobnicate parameter", "the frobnicate parameter", "the frobnicate parameter"},
		{"parameter damp", "parameter damp", "parameter damp"},
		{"theXdamp parameter", "theXdamp parameter", "theXdamp parameter"},
		{`"ort-lib" chooses the native ONNX Runtime library; the program that runs the recipe passes the library's path, or set X`,
			`"ort-lib" chooses the native ONNX Runtime library; pass --ort-lib on the command line, or set X`,
			`"ort-lib" chooses the native ONNX Runtime library; pass --ort-lib on the command line, or set X`},
		{`output "w" was not measured (name it in EvalOptions.Outputs)`, `output "w" was not measured (name it in --output-name)`, `output "w" was not measured (name it in output-name)`},
	} {
		if got := flagWords(c.in); got != c.flags {
			t.Errorf("flagWords(%q) = %q, want %q", c.in, got, c.flags)
		}
		if got := recipeWords(c.in); got != c.recipe {
			t.Errorf("recipeWords(%q) = %q, want %q", c.in, got, c.recipe)
		}
	}
}

// TestCLIWordsOfLibraryErrors: the library's sentinel errors, as the
// command line prints them.
func TestCLIWordsOfLibraryErrors(t *testing.T) {
	gptq := quant.Options{Weights: "int4", Method: "gptq"}.Validate()
	if !errors.Is(gptq, quant.ErrCalibration) {
		t.Fatalf("gptq without calibration: %v", gptq)
	}
	for _, c := range []struct {
		err  error
		want string
	}{
		{sparsity.ErrNotPositiveDefinite, "sparsity: XᵀX + λI is not positive definite; raise --damp"},
		{fmt.Errorf("evalharness: metric kl %w", evalharness.ErrNeedsReference), "evalharness: metric kl compares with a reference: pass a reference model (--ref REF.onnx)"},
		{gptq, "quant: calibration data: --method gptq needs calibration data (--calib)"},
		{quant.Options{Weights: "int8", Format: "matmulnbits"}.Validate(), `quant: invalid options: int8 weights support --format qdq only, got "matmulnbits"`},
	} {
		if got := cliMessage(c.err, flagWords); got != c.want {
			t.Errorf("cliMessage(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}

// flagLiterals are the string literals outside cmd/ and tools/ that may
// hold a command-line flag: argv the recipe runner passes to the CLI, and
// trtexec's own flags in sparsity's TensorRT hint.
var flagLiterals = map[string]bool{
	`"--seed"`: true, `"--data"`: true, `"--gate"`: true, `"--report"`: true,
	`"--sparsity=enable --fp16"`: true,
}

// TestLibraryStringsQuoteNoFlags: no string literal of a library package
// (everything but cmd/ and tools/) quotes a command-line flag; the
// library's messages name parameters ("the damp parameter") and option
// fields, and flagWords phrases them as flags.
func TestLibraryStringsQuoteNoFlags(t *testing.T) {
	flag := regexp.MustCompile(`(^|[^A-Za-z0-9-])--[a-z]`)
	root := filepath.Join("..", "..")
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			if rel == "cmd" || rel == "tools" || rel == "testdata" || strings.HasPrefix(d.Name(), ".") && rel != "." {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING && flag.MatchString(lit.Value) && !flagLiterals[lit.Value] {
				t.Errorf("%s: string %s quotes a command-line flag", rel, lit.Value)
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
