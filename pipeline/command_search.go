package pipeline

import (
	"context"
	"fmt"
	"io"
	"maps"
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
func Search(ctx context.Context, m *onnxio.Model, calib *evalharness.Dataset, opt LevelSearch, seed int64) (*onnxio.Model, *SearchReport, error) {
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
