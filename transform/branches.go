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
	// CalibratedOn is the branch on which the calibration statistics
	// every branch used were captured (Apply with WeightKeyed
	// statistics); "" when each branch was calibrated on itself or none
	// was calibrated.
	CalibratedOn string `json:"calibrated_on,omitempty"`
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
// The metadata the runs add to the branch models (a transform's record of
// itself) is set on the joined model, the no-cache branch's value first
// (BaseBranch). Models given twice (one pointer) are lifted once. The
// models of in are not modified.
func RunBranches(ctx context.Context, in Input, run BranchRun) (*onnxio.Model, *BranchReport, error) {
	l, err := liftInput(in)
	if err != nil {
		return nil, nil, err
	}
	return l.run(ctx, in, run)
}

// lifted are the models of an Input lifted into their branches.
type lifted struct {
	branches map[*onnxio.Model][]onnxio.Branch
	attrs    []string
}

// liftInput lifts every model of in (which must all be If-merged, with the
// same branches).
func liftInput(in Input) (*lifted, error) {
	if len(in.Models) == 0 {
		return nil, errors.New("no model to transform")
	}
	merged, err := Merged(in)
	if err != nil {
		return nil, err
	}
	if !merged {
		return nil, fmt.Errorf("%w: the model is not an If-merged decoder", onnxio.ErrBranches)
	}
	l := &lifted{branches: map[*onnxio.Model][]onnxio.Branch{}}
	for _, m := range append(slices.Clone(in.Models), in.Base) {
		if m == nil || l.branches[m] != nil {
			continue
		}
		bs, err := m.LiftBranches()
		if err != nil {
			return nil, err
		}
		var names []string
		for _, b := range bs {
			names = append(names, b.Attr)
		}
		if l.attrs == nil {
			l.attrs = names
		} else if !slices.Equal(l.attrs, names) {
			return nil, fmt.Errorf("%w: one model's If has the branches %v, another's %v", onnxio.ErrBranches, names, l.attrs)
		}
		l.branches[m] = bs
	}
	return l, nil
}

// run calls run once per branch and joins the results (RunBranches).
func (l *lifted) run(ctx context.Context, in Input, run BranchRun) (*onnxio.Model, *BranchReport, error) {
	rep := &BranchReport{Branches: map[string]any{}}
	var joined []onnxio.Branch
	for i, attr := range l.attrs {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		bin := in
		bin.Models = make([]*onnxio.Model, len(in.Models))
		for j, m := range in.Models {
			bin.Models[j] = l.branches[m][i].Model
		}
		if in.Base != nil {
			bin.Base = l.branches[in.Base][i].Model
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
	// the metadata the transform recorded on the branches (its
	// provenance: onnxpost.quant, onnxpost.sparsity...), the no-cache
	// branch's first
	bs := l.branches[in.Models[0]]
	order := slices.Clone(joined)
	if i := BaseBranch(bs); i > 0 {
		order[0], order[i] = order[i], order[0]
	}
	have := ref.Metadata()
	set := map[string]bool{}
	for _, b := range order {
		meta := b.Model.Metadata()
		for _, k := range sortedKeys(meta) {
			if v := meta[k]; have[k] != v && !set[k] {
				out.SetMetadata(k, v)
				set[k] = true
			}
		}
	}
	return out, rep, nil
}

// BaseBranch returns the index of the branch of bs (an If-merged model's
// lifted branches) whose graph inputs every other branch reads too (the
// no-cache branch of a decoder: the cache branch reads past key/values
// besides), provided every branch reads the same weights (float
// initializers of two or more dimensions); -1 when there is none. Its
// calibration statistics keyed by weight names serve every branch (Apply).
func BaseBranch(bs []onnxio.Branch) int {
	inputs := func(m *onnxio.Model) []string {
		var s []string
		for _, v := range m.Inputs() {
			s = append(s, v.Name)
		}
		return s
	}
	weights := func(m *onnxio.Model) []string {
		var s []string
		for _, name := range m.Initializers() {
			if dt, shape, err := m.InitializerInfo(name); err == nil && dt.IsFloat() && len(shape) >= 2 {
				s = append(s, name)
			}
		}
		slices.Sort(s)
		return s
	}
	for i, b := range bs {
		mine := inputs(b.Model)
		ok := true
		for j, o := range bs {
			theirs := inputs(o.Model)
			if j != i && (!slices.Equal(weights(b.Model), weights(o.Model)) || slices.ContainsFunc(mine, func(n string) bool { return !slices.Contains(theirs, n) })) {
				ok = false
				break
			}
		}
		if ok {
			return i
		}
	}
	return -1
}

// WeightKeyed is implemented by calibration statistics that can tell
// whether every statistic they hold is keyed by a weight's name (the
// input Gram matrix or column norms of the node reading the weight) and
// none by the name of a value of the graph (activation ranges and
// histograms): captured on one branch of a merged decoder, such
// statistics describe the shared weights of every branch (calib.Collected
// implements it).
type WeightKeyed interface {
	WeightKeyed() bool
}

// Calibrate computes Input.Calibration for the model a transform runs on
// (the first of Input.Models: a plain model, or one branch of an If-merged
// decoder lifted into a plain model).
type Calibrate func(ctx context.Context, model *onnxio.Model) (any, error)

// Apply runs t on in. When calibrate is not nil, in.Calibration is first
// computed by it on in.Models[0]. When in's models are If-merged decoders
// (Merged), t runs on each branch instead (RunBranches) and the report is
// a *BranchReport of t's reports. The calibration is then computed on the
// no-cache branch (the branch whose inputs every other branch reads too,
// all branches reading the same weights); when the statistics are keyed
// by weight names only (WeightKeyed: Gram matrices, column norms), they
// serve every branch, captured once; otherwise (activation ranges, or
// statistics that cannot tell) calibrate computes each branch's on that
// branch (a cache branch is fed empty past key/values by the capture, so
// the data flows through it as through the no-cache branch). This is how
// the recipes transform merged decoders; importers get the same by calling
// Apply instead of t.Run.
func Apply(ctx context.Context, t *Transform, in Input, calibrate Calibrate) (*onnxio.Model, any, error) {
	merged, err := Merged(in)
	if err != nil {
		return nil, nil, err
	}
	if !merged {
		if calibrate != nil {
			if len(in.Models) == 0 {
				return nil, nil, errors.New("no model to transform")
			}
			if in.Calibration, err = calibrate(ctx, in.Models[0]); err != nil {
				return nil, nil, err
			}
		}
		return t.Run(ctx, in)
	}
	l, err := liftInput(in)
	if err != nil {
		return nil, nil, err
	}
	pre := map[string]any{} // calibration captured before the runs, by branch
	shared := ""
	if calibrate != nil {
		bs := l.branches[in.Models[0]]
		if i := BaseBranch(bs); i >= 0 {
			c, err := calibrate(ctx, bs[i].Model)
			if err != nil {
				return nil, nil, fmt.Errorf("branch %s: %w", bs[i].Attr, err)
			}
			pre[bs[i].Attr] = c
			if wk, ok := c.(WeightKeyed); ok && wk.WeightKeyed() {
				shared = bs[i].Attr
				for _, b := range bs {
					pre[b.Attr] = c
				}
			}
		}
	}
	out, rep, err := l.run(ctx, in, func(ctx context.Context, attr string, in Input) (*onnxio.Model, any, error) {
		if calibrate != nil {
			c, ok := pre[attr]
			if !ok {
				var err error
				if c, err = calibrate(ctx, in.Models[0]); err != nil {
					return nil, nil, err
				}
			}
			in.Calibration = c
		}
		return t.Run(ctx, in)
	})
	if err != nil {
		return nil, nil, err
	}
	rep.CalibratedOn = shared
	return out, rep, nil
}
