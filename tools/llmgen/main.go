// Command llmgen writes a decoder-shaped ONNX language model with random
// weights and external data (internal/llmgen), and a small token set to
// calibrate it with:
//
//	go run ./tools/llmgen -out models/big -name llm1b.onnx            # 1.06 B parameters, 4.2 GB
//	go run ./tools/llmgen -out models/big -layers 2 -name llm2l.onnx  # the same widths, 2 blocks
//
// `make models-big` runs it for the benchmarks (models/big is not
// committed). -seed changes every weight, so two seeds give two models to
// merge.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/onnxpost/onnxpost/internal/llmgen"
	"github.com/onnxpost/onnxpost/onnxio"
)

func main() {
	c := llmgen.OneB
	out := flag.String("out", "models/big", "output folder")
	name := flag.String("name", "llm1b.onnx", "model file name (its data file is written beside it)")
	seed := flag.Uint64("seed", 1, "weight seed")
	flag.IntVar(&c.Layers, "layers", c.Layers, "decoder blocks")
	flag.IntVar(&c.Hidden, "hidden", c.Hidden, "model width")
	flag.IntVar(&c.Heads, "heads", c.Heads, "attention heads")
	flag.IntVar(&c.FF, "ff", c.FF, "MLP width")
	flag.IntVar(&c.Vocab, "vocab", c.Vocab, "vocabulary size")
	tokens := flag.String("tokens", "", "also write a calibration set (input_ids, attention_mask) to this .npz")
	samples := flag.Int("samples", 4, "calibration samples (with -tokens)")
	seq := flag.Int("seq", 16, "tokens per calibration sample (with -tokens)")
	flag.Parse()
	if err := run(c, *out, *name, *seed, *tokens, *samples, *seq); err != nil {
		fmt.Fprintln(os.Stderr, "llmgen:", err)
		os.Exit(1)
	}
}

func run(c llmgen.Config, out, name string, seed uint64, tokens string, samples, seq int) error {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	p, err := llmgen.Generate(out, name, c, seed)
	if err != nil {
		return err
	}
	size, err := onnxio.DiskSize(p)
	if err != nil {
		return err
	}
	fmt.Printf("%s: %d parameters, %.2f GB on disk\n", p, c.Params(), float64(size)/1e9)
	if tokens != "" {
		if !filepath.IsAbs(tokens) && filepath.Dir(tokens) == "." {
			tokens = filepath.Join(out, tokens)
		}
		if err := llmgen.WriteTokens(tokens, c.Vocab, samples, seq, seed); err != nil {
			return err
		}
		fmt.Printf("%s: %d × %d tokens\n", tokens, samples, seq)
	}
	return nil
}
