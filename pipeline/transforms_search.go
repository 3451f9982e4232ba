package pipeline

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"strconv"
	"strings"

	"github.com/onnxpost/onnxpost/compress/search"
	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/onnxio"
	"github.com/onnxpost/onnxpost/transform"
)

// stageList checks a list of positive integers A:B:...; last, when not
// zero, is the value the list must end with.
func stageList(last int) func(string) error {
	return func(s string) error {
		v, err := parseStages(s)
		if err != nil {
			return err
		}
		if last > 0 && v[len(v)-1] != last {
			return fmt.Errorf("want a list A:B:...:%d ending with %d", last, last)
		}
		return nil
	}
}

func parseStages(s string) ([]int, error) {
	var out []int
	for _, p := range strings.Split(s, ":") {
		v, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || v <= 0 {
			return nil, errors.New("want a list of positive integers A:B:...")
		}
		out = append(out, v)
	}
	return out, nil
}

// oneOf returns a Validate func accepting the given words.
func oneOf(words ...string) func(string) error {
	return func(s string) error {
		for _, w := range words {
			if s == w {
				return nil
			}
		}
		return fmt.Errorf("want %s", strings.Join(words, " or "))
	}
}

const (
	targetDoc = "budget: sparsity (also of sparsity,bits): fraction of zeros; rank: fraction of parameters kept; bits: mean bits per weight; drop: number of residual blocks dropped"
	methodDoc = "level builder: sparsity magnitude|wanda|sparsegpt (default magnitude); rank svd; bits rtn|gptq (default rtn); sparsity,bits `SPARSITY,BITS`"
)

// The search command's parameters shared by its spaces; target and method
// are declared per space (searchTarget, searchMethod). generations,
// offspring and levels accept 0, which the search reads as its default,
// as the command line always did.
var (
	paramSpace = &transform.Param{Name: "space", Kind: transform.String, Default: SpaceSparsity,
		Validate: func(s string) error {
			switch ParseSpace(s) {
			case SpaceSparsity, SpaceRank, SpaceBits, SpaceDrop, SpaceSparsityBits:
				return nil
			}
			if strings.Contains(s, ",") || strings.Contains(s, "+") {
				return errors.New("the only combined space is sparsity,bits")
			}
			return errors.New("want sparsity, rank, bits, drop or sparsity,bits")
		},
		Doc: "what to search: sparsity, rank, bits or drop"}
	paramTargetBits = &transform.Param{Name: "target-bits", Kind: transform.Float, Range: transform.Between(2, 8, "[]"),
		Doc: "sparsity,bits only: mean bits per weight (required there)"}
	paramSearchCalibSamples = &transform.Param{Name: "calib-samples", Kind: transform.Int, Range: transform.AtLeast(0),
		Doc: "capture activations for wanda/sparsegpt/gptq on the first `N` calibration samples (0: all)"}
	paramFitness = &transform.Param{Name: "fitness", Kind: transform.Enum, Choices: []string{FitnessKL, FitnessMSE, FitnessCosine},
		Doc: "kl, mse or cosine (default: kl for [N, C] and [N, T, V] outputs, cosine otherwise)"}
	paramBitsLadder = &transform.Param{Name: "bits", Kind: transform.List, Elem: transform.Enum, Choices: []string{"2", "4", "8"},
		Doc: "bits ladder `B1,B2,...` with equal steps (default 2,4 or 4,8)"}
	paramSearchBlock = &transform.Param{Name: "block", Kind: transform.Int, Default: "32", Range: transform.AtLeast(1),
		Doc: "bits: quantization block size along K"}
	paramGenerations = &transform.Param{Name: "generations", Kind: transform.Int, Default: "50", Range: transform.AtLeast(0),
		Doc: "generations of the (1+λ) loop"}
	paramOffspring = &transform.Param{Name: "offspring", Kind: transform.Int, Default: "16", Range: transform.AtLeast(0),
		Doc: "offspring λ per generation"}
	paramSelection = &transform.Param{Name: "selection", Kind: transform.String, Default: "4:1", Validate: stageList(1),
		Doc: "survivors per stage, `A:B:...:1`"}
	paramTokens = &transform.Param{Name: "tokens", Kind: transform.String, Default: "32:256", Validate: stageList(0),
		Doc: "calibration samples per stage, `A:B:...` (one per selection stage)"}
	paramLevels = &transform.Param{Name: "levels", Kind: transform.Int, Default: "8", Range: transform.AtLeast(0),
		Doc: "ladder steps on each side of the uniform level"}
	paramSearchInclude = &transform.Param{Name: "include", Kind: transform.String, Validate: transform.Regexp,
		Doc: "only layers whose weight or node name matches `REGEX`"}
	paramSearchExclude = &transform.Param{Name: "exclude", Kind: transform.String, Validate: transform.Regexp,
		Doc: "skip layers whose weight or node name matches `REGEX`"}
	paramStart = &transform.Param{Name: "start", Kind: transform.Enum, Default: "best", Choices: []string{"best", "uniform"},
		Doc: "start the search from the best baseline (uniform or per-layer-error) or from uniform"}
)

func searchTarget(validate func(string) error) *transform.Param {
	return &transform.Param{Name: "target", Kind: transform.Float, Validate: validate, Doc: targetDoc}
}

func searchMethod(validate func(string) error) *transform.Param {
	return &transform.Param{Name: "method", Kind: transform.String, Validate: validate, Doc: methodDoc}
}

// fraction accepts a number in (0, 1).
func fraction(what string) func(string) error {
	return func(s string) error {
		if v, _ := strconv.ParseFloat(s, 64); !(v > 0 && v < 1) {
			return fmt.Errorf("a %s target is a fraction in (0, 1)", what)
		}
		return nil
	}
}

func searchSpace(space, doc string, target, method *transform.Param, extra ...*transform.Param) *transform.Transform {
	ps := []*transform.Param{paramSpace, target}
	if method != nil {
		ps = append(ps, method)
	}
	ps = append(ps, extra...)
	ps = append(ps, paramSearchCalibSamples, paramFitness, paramGenerations, paramOffspring, paramSelection, paramTokens,
		paramLevels, paramSearchInclude, paramSearchExclude, paramStart)
	return &transform.Transform{
		Name: "search/" + space, Doc: doc, Params: ps, Needs: transform.NeedData,
		Check: func(a transform.Args) error {
			sel, _ := parseStages(a.String("selection"))
			tok, _ := parseStages(a.String("tokens"))
			if len(sel) != len(tok) {
				return fmt.Errorf("selection has %d stages but tokens %d", len(sel), len(tok))
			}
			if space == SpaceSparsityBits && !a.Has("target-bits") {
				return errors.New("space sparsity,bits needs target-bits (mean bits per weight) besides target (fraction of zeros)")
			}
			return nil
		},
		Run: runSearch,
	}
}

// The search spaces as transforms (search_sparsity.go, search_rank.go,
// search_bits.go, search_drop.go and search_combined.go hold their level
// builders; search_spaces.go what they share).
var (
	SearchSparsity = searchSpace(SpaceSparsity,
		"Per-layer sparsity allocation under an exact budget of zeros over the searched MatMul/Gemm/Conv weights (EvoPress), levels by magnitude, wanda or sparsegpt.",
		searchTarget(fraction("sparsity")), searchMethod(oneOf("magnitude", "wanda", "sparsegpt")))
	SearchRank = searchSpace(SpaceRank,
		"Per-layer rank allocation keeping an exact fraction of the searched MatMul/Gemm parameters; the output rewrites every layer into two MatMuls at its rank.",
		searchTarget(fraction("rank")), searchMethod(oneOf("svd")))
	SearchBits = searchSpace(SpaceBits,
		"Per-layer bit widths with an exact mean bits per weight of the 2-D MatMul weights, block-wise RTN or GPTQ levels; the output holds the dequantized weights.",
		searchTarget(func(s string) error {
			if v, _ := strconv.ParseFloat(s, 64); !(v >= 2 && v <= 8) {
				return errors.New("a bits target is a mean bit width in [2, 8]")
			}
			return nil
		}), searchMethod(oneOf("rtn", "gptq")), paramBitsLadder, paramSearchBlock)
	SearchDrop = searchSpace(SpaceDrop,
		"Drops an exact number of residual sub-blocks (an Add whose branch ends in a linear layer); the output really removes them.",
		searchTarget(func(s string) error {
			if v, _ := strconv.ParseFloat(s, 64); !(v >= 1 && v == float64(int64(v))) {
				return errors.New("a drop target is a whole number of residual blocks (>= 1)")
			}
			return nil
		}), nil)
	SearchSparsityBits = searchSpace(SpaceSparsityBits,
		"Sparsity and bit widths searched together on the 2-D MatMul weights, both budgets exact; the output is pruned, then packed into MatMulNBits at each layer's width.",
		searchTarget(fraction("sparsity")), searchMethod(func(s string) error {
			sp, bits, _ := strings.Cut(s, ",")
			if err := oneOf("", "magnitude", "wanda", "sparsegpt")(strings.TrimSpace(sp)); err != nil {
				return fmt.Errorf("sparsity levels: %v", err)
			}
			if err := oneOf("", "rtn", "gptq")(strings.TrimSpace(bits)); err != nil {
				return fmt.Errorf("bits levels: %v", err)
			}
			return nil
		}), paramTargetBits, paramBitsLadder, paramSearchBlock)
)

// SearchCommand is the search command: one transform per space.
var SearchCommand = &transform.Command{
	Name:       "search",
	Transforms: []*transform.Transform{SearchSparsity, SearchRank, SearchBits, SearchDrop, SearchSparsityBits},
	Choose: func(a transform.Args) (*transform.Transform, error) {
		for _, t := range []*transform.Transform{SearchSparsity, SearchRank, SearchBits, SearchDrop, SearchSparsityBits} {
			if t.Name == "search/"+ParseSpace(a.String("space")) {
				return t, nil
			}
		}
		return nil, fmt.Errorf("space %q: want sparsity, rank, bits, drop or sparsity,bits", a.String("space"))
	},
}

// SearchOptionsFromArgs returns the LevelSearch that validated parameter
// values describe (seed seeds the search's random source).
func SearchOptionsFromArgs(a transform.Args, seed int64) (LevelSearch, error) {
	opt := LevelSearch{
		Space: ParseSpace(a.String("space")), Method: a.String("method"), Target: a.Float("target"),
		TargetBits: a.Float("target-bits"), Fitness: a.String("fitness"), BlockSize: a.Int("block"),
		CalibSamples: a.Int("calib-samples"), Start: a.String("start"), Levels: a.Int("levels"),
	}
	if opt.Space == SpaceSparsityBits {
		if sp, bits, ok := strings.Cut(opt.Method, ","); ok {
			opt.Method, opt.BitsMethod = strings.TrimSpace(sp), strings.TrimSpace(bits)
		}
	}
	for _, b := range a.List("bits") {
		v, _ := strconv.Atoi(b)
		opt.Bits = append(opt.Bits, v)
	}
	var err error
	if opt.Include, err = a.Regexp("include"); err != nil {
		return opt, err
	}
	if opt.Exclude, err = a.Regexp("exclude"); err != nil {
		return opt, err
	}
	sel, err := parseStages(a.String("selection"))
	if err != nil {
		return opt, fmt.Errorf("search: selection: %v", err)
	}
	tok, err := parseStages(a.String("tokens"))
	if err != nil {
		return opt, fmt.Errorf("search: tokens: %v", err)
	}
	opt.Search = search.Options{Generations: a.Int("generations"), Offspring: a.Int("offspring"), Survivors: sel, Samples: tok,
		Rand: rand.New(rand.NewSource(seed))}
	return opt, nil
}

// runSearch runs the search on in.Data (an *evalharness.Dataset) and
// returns the searched model (Search: with the command's metadata) and
// the *SearchReport.
func runSearch(ctx context.Context, in transform.Input) (*onnxio.Model, any, error) {
	if len(in.Models) != 1 {
		return nil, nil, fmt.Errorf("search takes one model, got %d", len(in.Models))
	}
	calib, ok := in.Data.(*evalharness.Dataset)
	if !ok || calib == nil {
		return nil, nil, fmt.Errorf("search needs calibration data (an *evalharness.Dataset), got %T", in.Data)
	}
	opt, err := SearchOptionsFromArgs(in.Args, in.Seed)
	if err != nil {
		return nil, nil, err
	}
	out, rep, err := Search(ctx, in.Models[0], calib, opt, in.Seed)
	if err != nil {
		return nil, nil, err
	}
	return out, rep, nil
}
