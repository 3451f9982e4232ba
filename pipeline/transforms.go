package pipeline

import (
	"github.com/onnxpost/onnxpost/compress/lowrank"
	"github.com/onnxpost/onnxpost/compress/sparsity"
	"github.com/onnxpost/onnxpost/merge"
	"github.com/onnxpost/onnxpost/quant"
	"github.com/onnxpost/onnxpost/transform"
)

// Commands is the registry of the transforming commands: each declares
// its transforms and their parameters (the packages' transform.go and
// scheme files, transforms_search.go). The command line derives these
// commands' transform flags from it, and ParseRecipe checks every value a
// recipe step gives them before anything runs.
var Commands = []*transform.Command{merge.Command, quant.Command, sparsity.Command, lowrank.Command, SearchCommand}

// CommandNamed returns the registered command named name, or nil.
func CommandNamed(name string) *transform.Command {
	for _, c := range Commands {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// Transforms lists every registered transform, command by command.
func Transforms() []*transform.Transform {
	var out []*transform.Transform
	for _, c := range Commands {
		out = append(out, c.Transforms...)
	}
	return out
}
