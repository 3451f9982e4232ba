package pipeline

import (
	"context"
	"fmt"
	"slices"

	"github.com/onnxpost/onnxpost/merge"
	"github.com/onnxpost/onnxpost/onnxio"
	"github.com/onnxpost/onnxpost/transform"
)

// openMerge loads the base (base "" for none) and the models of a merge.
// Plain models are merge.OpenInputs's: prepared for merging and hashed in
// the background. If-merged decoders (onnxio.Model.IfMerged; the models
// and the base must then all be, or the error wraps
// transform.ErrMixedModels) are loaded as they are, merged reports true:
// merge.Prepare refuses the Constant nodes their branches hold, so they
// are merged branch by branch (mergeBranches), each branch prepared.
func openMerge(base string, models []string) (in merge.Inputs, sources func() ([]merge.Source, error), merged bool, err error) {
	for _, p := range append(slices.Clone(models), base) {
		if p == "" {
			continue
		}
		if m, err := onnxio.LoadLazy(p); err == nil {
			if _, ok := m.IfMerged(); ok {
				merged = true
				break
			}
		}
	}
	if !merged {
		in, sources, err = merge.OpenInputs(base, models)
		return in, sources, false, err
	}
	var bs []*onnxio.Model
	if base != "" {
		if bs, err = merge.LoadModels([]string{base}); err != nil {
			return in, nil, false, err
		}
		in.Base = bs[0]
		in.Labels = append(in.Labels, base)
	}
	if in.Models, err = merge.LoadModels(models); err != nil {
		return in, nil, false, err
	}
	in.Labels = append(in.Labels, models...)
	if _, err := transform.Merged(transform.Input{Models: in.Models, Base: in.Base}); err != nil {
		return in, nil, false, err
	}
	return in, func() ([]merge.Source, error) {
		var srcs []merge.Source
		if base != "" {
			if srcs, err = merge.Sources("base", []string{base}, bs); err != nil {
				return nil, err
			}
		}
		ms, err := merge.Sources("model", models, in.Models)
		if err != nil {
			return nil, err
		}
		return append(srcs, ms...), nil
	}, true, nil
}

// mergeBranches merges If-merged decoders branch by branch
// (transform.RunBranches): run gets, once per branch, the branch of every
// model and of the base lifted into a plain model and prepared for merging
// (merge.Prepare, as the command's branch runs prepare their branch files),
// with in's labels and Fishers (those of the shared weights, computed on
// the branch the data takes, fisher.FromData). The branches' models are
// joined back into the If.
func mergeBranches(ctx context.Context, in merge.Inputs, run func(ctx context.Context, attr string, in merge.Inputs) (*onnxio.Model, any, error)) (*onnxio.Model, *transform.BranchReport, error) {
	return transform.RunBranches(ctx, transform.Input{Models: in.Models, Base: in.Base}, func(ctx context.Context, attr string, bin transform.Input) (*onnxio.Model, any, error) {
		bi := merge.Inputs{Base: bin.Base, Models: bin.Models, Fishers: in.Fishers, Labels: in.Labels}
		all := bi.Models
		if bi.Base != nil {
			all = append([]*onnxio.Model{bi.Base}, all...)
		}
		labels := in.Labels
		if len(labels) != len(all) {
			labels = make([]string, len(all))
			for i := range labels {
				labels[i] = fmt.Sprintf("model %d", i+1)
			}
		}
		if err := merge.Prepare(all, labels); err != nil {
			return nil, nil, fmt.Errorf("branch %s: %w", attr, err)
		}
		return run(ctx, attr, bi)
	})
}
