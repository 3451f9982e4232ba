package transform

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/onnxpost/onnxpost/onnxio"
)

// ErrMixedModels reports a transform given If-merged decoders beside plain
// models: a merged decoder is transformed branch by branch, which a plain
// model has not.
var ErrMixedModels = errors.New("an If-merged decoder cannot be combined with plain models")

// Merged reports whether the models of in (in.Models and in.Base) are
// If-merged decoders (onnxio.Model.IfMerged: Optimum's merged layout, one
// If whose branches are whole decoders reading the main graph's weights).
// It returns false when none is, true when all are, and an error wrapping
// ErrMixedModels when some are.
func Merged(in Input) (bool, error) {
	models := slices.Clone(in.Models)
	if in.Base != nil {
		models = append(models, in.Base)
	}
	n := 0
	seen := map[*onnxio.Model]bool{}
	for _, m := range models {
		if m == nil || seen[m] {
			continue
		}
		seen[m] = true
		if _, ok := m.IfMerged(); ok {
			n++
		}
	}
	switch {
	case n == 0:
		return false, nil
	case n < len(seen):
		return false, fmt.Errorf("%w (%d of %d models are merged decoders)", ErrMixedModels, n, len(seen))
	}
	return true, nil
}

// BranchRun transforms one branch: in is the Input given to RunBranches
// with every model replaced by its branch named branch ("then_branch",
// "else_branch") lifted into a plain model.
type BranchRun func(ctx context.Context, branch string, in Input) (*onnxio.Model, any, error)

// BranchReport is the report of a transform run branch by branch: each
// branch's report, by the If attribute the branch comes from.
type BranchReport struct {
	// Branches are the branches' reports.
	Branches map[string]any `json:"branches"`
}

// RunBranches transforms If-merged decoders (see Merged; every model of
// in must be one, with the same branches) branch by branch: each model is
// lifted into its branches (onnxio.Model.LiftBranches: a branch becomes a
// plain model with the graph inputs it reads, the main graph's weights
// and its own nodes), run is called once per branch with in's models
// replaced by their lifted branch, and the models run returns are joined
// back into a copy of in.Base, or in.Models[0] without a base
// (onnxio.Model.JoinBranches: the weights the branches share must come out
// equal from every branch, or the error, wrapping onnxio.ErrBranches,
// names the tensor). in.Calibration, in.Data, in.Args and in.Options reach
// every branch run as they are; run computes what depends on the branch
// (calibration statistics captured on the branch, as Apply does).
// Models given twice (one pointer) are lifted once. The models of in are
// not modified.
func RunBranches(ctx context.Context, in Input, run BranchRun) (*onnxio.Model, *BranchReport, error) {
	if len(in.Models) == 0 {
		return nil, nil, errors.New("no model to transform")
	}
	merged, err := Merged(in)
	if err != nil {
		return nil, nil, err
	}
	if !merged {
		return nil, nil, fmt.Errorf("%w: the model is not an If-merged decoder", onnxio.ErrBranches)
	}
	lifted := map[*onnxio.Model][]onnxio.Branch{}
	var attrs []string
	lift := func(m *onnxio.Model) error {
		if m == nil || lifted[m] != nil {
			return nil
		}
		bs, err := m.LiftBranches()
		if err != nil {
			return err
		}
		var names []string
		for _, b := range bs {
			names = append(names, b.Attr)
		}
		if attrs == nil {
			attrs = names
		} else if !slices.Equal(attrs, names) {
			return fmt.Errorf("%w: one model's If has the branches %v, another's %v", onnxio.ErrBranches, names, attrs)
		}
		lifted[m] = bs
		return nil
	}
	for _, m := range append(slices.Clone(in.Models), in.Base) {
		if err := lift(m); err != nil {
			return nil, nil, err
		}
	}
	rep := &BranchReport{Branches: map[string]any{}}
	var joined []onnxio.Branch
	for i, attr := range attrs {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		bin := in
		bin.Models = make([]*onnxio.Model, len(in.Models))
		for j, m := range in.Models {
			bin.Models[j] = lifted[m][i].Model
		}
		if in.Base != nil {
			bin.Base = lifted[in.Base][i].Model
		}
		out, r, err := run(ctx, attr, bin)
		if err != nil {
			return nil, nil, fmt.Errorf("branch %s: %w", attr, err)
		}
		joined = append(joined, onnxio.Branch{Attr: attr, Model: out})
		rep.Branches[attr] = r
	}
	ref := in.Models[0]
	if in.Base != nil {
		ref = in.Base
	}
	out, err := ref.JoinBranches(joined)
	if err != nil {
		return nil, nil, err
	}
	return out, rep, nil
}

// Calibrate computes Input.Calibration for the model a transform runs on
// (the first of Input.Models: a plain model, or one branch of an If-merged
// decoder lifted into a plain model).
type Calibrate func(ctx context.Context, model *onnxio.Model) (any, error)

// Apply runs t on in. When calibrate is not nil, in.Calibration is first
// computed by it on in.Models[0]. When in's models are If-merged decoders
// (Merged), t runs on each branch instead (RunBranches), calibrate
// computing each branch's statistics on that branch (a cache branch is fed
// empty past key/values by the capture, so the data flows through it as
// through the no-cache branch), and the report is a *BranchReport of t's
// reports. This is how the command line and the recipes transform merged
// decoders; importers get the same by calling Apply instead of t.Run.
func Apply(ctx context.Context, t *Transform, in Input, calibrate Calibrate) (*onnxio.Model, any, error) {
	one := func(ctx context.Context, in Input) (*onnxio.Model, any, error) {
		if calibrate != nil {
			if len(in.Models) == 0 {
				return nil, nil, errors.New("no model to transform")
			}
			c, err := calibrate(ctx, in.Models[0])
			if err != nil {
				return nil, nil, err
			}
			in.Calibration = c
		}
		return t.Run(ctx, in)
	}
	merged, err := Merged(in)
	if err != nil {
		return nil, nil, err
	}
	if !merged {
		return one(ctx, in)
	}
	out, rep, err := RunBranches(ctx, in, func(ctx context.Context, _ string, in Input) (*onnxio.Model, any, error) {
		return one(ctx, in)
	})
	if err != nil {
		return nil, nil, err
	}
	return out, rep, nil
}
