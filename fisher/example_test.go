package fisher_test

import (
	"context"
	"fmt"
	"log"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/fisher"
	"github.com/onnxpost/onnxpost/onnxio"
)

// The diagonal Fisher of a classifier over a dataset, written as a Fisher
// file for merge --method fisher. (Not run by go test: it needs ONNX
// Runtime and the zoo.)
func Example() {
	m, err := onnxio.Load("models/zoo/cnn/ft_flip.onnx")
	if err != nil {
		log.Fatal(err)
	}
	ds, err := evalharness.LoadDataset("models/data/digits_flip_val.npz")
	if err != nil {
		log.Fatal(err)
	}
	f, err := fisher.Compute(context.Background(), m, ds, fisher.Options{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(f["conv1.weight"])) // 16·1·3·3 values
	fm, _, err := fisher.FromData(context.Background(), m, "ft_flip.onnx", ds, fisher.Options{Samples: 4, Seed: 1})
	if err != nil {
		log.Fatal(err)
	}
	if err := fm.Save("ft_flip.fisher.onnx", nil); err != nil {
		log.Fatal(err)
	}
}
