// Package merge merges ONNX models of one architecture in weight space:
// linear averaging and model soups (uniform and greedy), task arithmetic,
// TIES-Merging (global or per-tensor trim), DARE and DARE-TIES, SLERP and
// Fisher-weighted averaging, with the exact definitions of docs/ARCHITECTURE.md
// §5.1.
//
// # Overview
//
// The package has two layers. The kernels (LinearTo, TaskArithmeticTo,
// TIESTo, DARETo, SLERPTo, FisherTo, GreedySoup, TopKThreshold, Selector)
// are pure functions over []float32 or []float64 with float64 accumulation;
// they know nothing of ONNX. New builds a Merger over onnxio models: it
// pairs every model's tensors with the template's (the base, or the first
// model) by graph position with onnxio.Match, checks that non-float tensors
// are equal, selects the floating-point initializers to merge (Include,
// Exclude) and, for TIES with a global trim, finds each model's threshold by
// an exact radix selection over |τ| in a few streaming passes. Merger.Save
// then merges tensor by tensor as onnxio writes the output; Merger.Model
// builds the result in memory (for evaluation before writing).
//
//	base, _ := onnxio.Load("base.onnx")
//	a, _ := onnxio.Load("a.onnx")
//	b, _ := onnxio.Load("b.onnx")
//	opt := merge.Options{Method: merge.TIES, Density: 0.2}
//	mg, err := merge.New(ctx, merge.Inputs{Base: base, Models: []*onnxio.Model{a, b}}, opt, nil)
//	out := mg.Output()
//	merge.SetProvenance(out, &opt, nil) // method, parameters, inputs' sha256
//	err = mg.Save(ctx, out, "merged.onnx", nil)
//
// # Definitions and choices
//
// TIES keeps, per model, the entries with |τ| ≥ the k-th largest |τ|,
// k = max(1, ⌊density·n⌋) (ties at the threshold kept) over all merged
// tensors (TrimGlobal, the paper's reference) or per tensor (TrimTensor,
// mergekit); the sign is elected on the unweighted sum of trimmed deltas,
// a zero sum counting as +1; the disjoint mean divides by the sum of the
// agreeing models' weights (their count with unit weights). DARE drops with
// a counter-based generator (see StreamKey, Uniform) so that a seed gives the
// same mask whatever the number of workers, and rescales by 1/(1−p) as in
// the DARE paper (not mergekit's L1 rescaling). SLERP falls back to linear
// interpolation when |cos| > 0.9995 (mergekit's threshold) or a tensor is
// zero. Fisher floors every model's Fisher at FisherFloor and, optionally,
// divides each model's weight by the L2 norm of its Fisher over the merged
// tensors. Tensors stored in float16, bfloat16 or float8 are widened to
// float32, merged with float64 accumulation and rounded back to their type;
// float64 tensors are merged in float64.
//
// mergekit's other methods (DARELinear, Breadcrumbs, BreadcrumbsTIES, Della,
// DellaLinear, ModelStock, NuSlerp, MultiSlerp, Karcher, SCE, NearSwap,
// ArceeFusion) follow mergekit's implementation, each kernel's doc comment
// giving its exact definition and where it departs from mergekit or the
// paper; their parameters are declared by Method.Params and set by
// Options.SetParam. Config reads mergekit's YAML: gradients and filters
// (Setting) are evaluated per tensor over the layers FindLayers finds in
// the graph; passthrough (layer stacking) is refused.
//
// # Invariants
//
// Input models are never modified. Every floating-point initializer
// selected is merged by the method's formula; non-float initializers are
// copied after checking they are equal in every model; weights held in
// Constant nodes are left as in the template. At most (models + 1) tensors
// of one name (plus Fisher tensors) are in memory per worker, plus the
// output tensor; the mergekit kernels also hold, per worker, float64
// working copies of the tensor (8 bytes per element and model for the
// task vectors of the GTA family and sce, a few vectors for the spherical
// methods) and, for the ranking ones (breadcrumbs, della, sce with
// select_topk), a 16-byte sort key per element.
//
// # Aliasing
//
// The kernels write only dst. dst may alias an input for LinearTo,
// TaskArithmeticTo, TIESTo and DARETo (each element is read before it is
// written); SLERPTo, FisherTo and the mergekit kernels allow it as well.
//
// # Trust
//
// Models come through onnxio, which validates them. Options and configs
// are user input: Validate and ParseConfig return errors wrapping
// ErrOptions; incompatible models give errors wrapping ErrIncompatible
// listing the differences. The kernels panic only on caller bugs (slices of
// different lengths).
package merge
