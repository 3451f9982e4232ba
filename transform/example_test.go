package transform_test

import (
	"context"
	"fmt"

	"github.com/onnxpost/onnxpost/onnxio"
	"github.com/onnxpost/onnxpost/transform"
)

// A transform declares its parameters; Check validates values as a recipe
// or a command line gives them, before anything runs.
func Example() {
	scale := &transform.Transform{
		Name: "scale/uniform",
		Doc:  "Multiplies every weight by factor.",
		Params: []*transform.Param{
			{Name: "factor", Kind: transform.Float, Default: "1", Range: transform.Between(0, 10, "(]"), Doc: "scale `F`"},
		},
		Run: func(ctx context.Context, in transform.Input) (*onnxio.Model, any, error) {
			return in.Models[0].Clone(), nil, nil // a real transform edits the clone
		},
	}
	cmd := &transform.Command{Name: "scale", Transforms: []*transform.Transform{scale}}
	if err := transform.Validate([]*transform.Command{cmd}); err != nil {
		fmt.Println(err)
	}
	_, args, err := cmd.Check(map[string]any{"factor": 2.5})
	fmt.Println(args.Float("factor"), err)
	_, _, err = cmd.Check(map[string]any{"factor": 70})
	fmt.Println(err)
	// Output:
	// 2.5 <nil>
	// invalid value: factor = "70": want a number in (0, 10]
}
