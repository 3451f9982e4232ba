// Command gen writes synthetic transformer-shaped models for the merge
// benchmark: a base and N fine-tunes (base + Gaussian deltas) of about the
// requested size each, with external data, generated tensor by tensor.
//
//	go run ./merge/internal/synth/gen -bytes 1e9 -models 3 -out /tmp/mergebench
//
// writes OUT/base.onnx, OUT/ft1.onnx ... (each with its .data file).
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/onnxpost/onnxpost/merge/internal/synth"
)

func main() {
	size := flag.Float64("bytes", 1e9, "approximate float32 parameter bytes per model")
	n := flag.Int("models", 3, "number of fine-tunes")
	out := flag.String("out", "", "output folder")
	delta := flag.Float64("delta", 0.01, "standard deviation of the fine-tune deltas")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "gen: -out is required")
		os.Exit(2)
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
	c := synth.ForBytes(int64(*size))
	fmt.Printf("config: %d layers, hidden %d, ffn %d, vocab %d: %d parameters (%.2f GB float32)\n",
		c.Layers, c.Hidden, c.FFN, c.Vocab, c.Params(), float64(4*c.Params())/1e9)
	write := func(name string, deltaSeed uint64, d float64) {
		p := filepath.Join(*out, name+".onnx")
		if err := synth.Write(p, c, 1, deltaSeed, d, true); err != nil {
			fmt.Fprintln(os.Stderr, "gen:", err)
			os.Exit(1)
		}
		fmt.Println("wrote", p)
	}
	write("base", 0, 0)
	for i := 1; i <= *n; i++ {
		write(fmt.Sprintf("ft%d", i), uint64(100+i), *delta)
	}
}
