package pipeline

import (
	"context"
	"fmt"
	"io"
	"maps"
	"math/rand"
	"os"
	"path/filepath"
	"slices"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/onnxio"
	"github.com/onnxpost/onnxpost/transform"
)

// DefaultCacheDir is the search's level cache folder when none is given:
// onnxpost/levels in the user's cache folder ("" when there is none).
func DefaultCacheDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "onnxpost", "levels")
	}
	return ""
}

// SearchOptionsFromFlags returns the LevelSearch of the search command:
// its checked parameters (args) with the flags seed, baselines, cache-dir,
// batch and output-name, and the session so. Combinations the
// declarations cannot check (target-bits outside sparsity,bits, a method
// for drop) are usage errors.
func SearchOptionsFromFlags(args transform.Args, f Flags, so evalharness.SessionOptions) (LevelSearch, error) {
	space := ParseSpace(args.String("space"))
	if space != SpaceSparsityBits && f.IsSet("target-bits") {
		return LevelSearch{}, Usagef("target-bits applies to space sparsity,bits only")
	}
	if space == SpaceDrop && args.String("method") != "" {
		return LevelSearch{}, Usagef("method %q: drop levels have no method", args.String("method"))
	}
	opt, err := SearchOptionsFromArgs(args, f.Int64("seed"))
	if err != nil {
		return opt, Usage(err)
	}
	opt.Baselines, opt.CacheDir = f.String("baselines") != "", f.String("cache-dir")
	opt.Batch, opt.Session, opt.Outputs = f.Int("batch"), so, evalharness.ParseOutputNames(f.String("output-name"))
	return opt, nil
}

// Search runs the search command: RunSearch on m with calib, the
// searched model's metadata "onnxpost.search" recording the space,
// method, target, what was achieved, seed, fitness and losses.
//
// An If-merged decoder (onnxio.Model.IfMerged) is searched branch by
// branch (transform.RunBranches: each branch lifted into a plain model,
// searched on calib, the results joined with their shared weights, which
// must come out equal); the report is that of the branch the data takes
// (onnxio.Model.DataBranch, the no-cache branch), its baseline models the
// branches' baselines joined into merged decoders like the result. Each
// branch's search draws from a source seeded with seed (as
// SearchOptionsFromArgs seeds opt.Search.Rand), so that both search as the
// plain decoder would.
func Search(ctx context.Context, m *onnxio.Model, calib *evalharness.Dataset, opt LevelSearch, seed int64) (*onnxio.Model, *SearchReport, error) {
	if _, ok := m.IfMerged(); ok {
		return searchBranches(ctx, m, calib, opt, seed)
	}
	out, rep, err := RunSearch(ctx, m, calib, opt)
	if err != nil {
		return nil, nil, err
	}
	meta := fmt.Sprintf("space=%s method=%s target=%g achieved=%.6f", rep.Space, rep.Method, opt.Target, rep.Achieved)
	if rep.Space == SpaceSparsityBits {
		meta += fmt.Sprintf(" target_bits=%g achieved_bits=%.6f", rep.TargetBits, rep.AchievedBits)
	}
	out.SetMetadata("onnxpost.search", fmt.Sprintf("%s seed=%d fitness=%s loss=%.6g uniform_loss=%.6g",
		meta, seed, rep.Fitness, rep.Searched.Loss, rep.Uniform.Loss))
	return out, rep, nil
}

// searchBranches is Search on the If-merged decoder m.
func searchBranches(ctx context.Context, m *onnxio.Model, calib *evalharness.Dataset, opt LevelSearch, seed int64) (*onnxio.Model, *SearchReport, error) {
	data, err := m.DataBranch(func(name string) bool { _, ok := calib.Inputs[name]; return ok })
	if err != nil {
		return nil, nil, err
	}
	reps := map[string]*SearchReport{}
	var attrs []string
	out, _, err := transform.RunBranches(ctx, transform.Input{Models: []*onnxio.Model{m}}, func(ctx context.Context, attr string, in transform.Input) (*onnxio.Model, any, error) {
		if opt.Log != nil {
			opt.Log("If-merged decoder: searching its %s", attr)
		}
		o := opt
		if o.Search.Rand != nil {
			// every branch draws what the plain decoder's search would
			// (SearchOptionsFromArgs seeds the source with seed)
			o.Search.Rand = rand.New(rand.NewSource(seed))
		}
		out, rep, err := Search(ctx, in.Models[0], calib, o, seed)
		reps[attr] = rep
		attrs = append(attrs, attr)
		return out, rep, err
	})
	if err != nil {
		return nil, nil, err
	}
	rep := *reps[data.Attr]
	if len(rep.BaselineModels) > 0 {
		rep.BaselineModels = map[string]*onnxio.Model{}
		for name := range reps[data.Attr].BaselineModels {
			var parts []onnxio.Branch
			for _, attr := range attrs {
				bm, ok := reps[attr].BaselineModels[name]
				if !ok {
					return nil, nil, fmt.Errorf("search: the %s has no %s baseline", attr, name)
				}
				parts = append(parts, onnxio.Branch{Attr: attr, Model: bm})
			}
			if rep.BaselineModels[name], err = m.JoinBranches(parts); err != nil {
				return nil, nil, fmt.Errorf("search: the %s baseline: %w", name, err)
			}
		}
	}
	return out, &rep, nil
}

// SaveSearchBaselines writes the search's baseline models
// (LevelSearch.Baselines) into dir as NAME.onnx, naming each on log (nil:
// nowhere).
func SaveSearchBaselines(dir string, rep *SearchReport, log io.Writer) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, name := range slices.Sorted(maps.Keys(rep.BaselineModels)) {
		path := filepath.Join(dir, name+".onnx")
		if err := rep.BaselineModels[name].Save(path, nil); err != nil {
			return err
		}
		if log != nil {
			fmt.Fprintf(log, "search: wrote the %s baseline to %s\n", name, path)
		}
	}
	return nil
}
