package merge

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"
)

// Method names a merge method; its values are the method parameter's values.
type Method string

// The merge methods (docs/ARCHITECTURE.md §5.1).
const (
	Linear         Method = "linear"
	TaskArithmetic Method = "task-arithmetic"
	TIES           Method = "ties"
	DARE           Method = "dare"
	DARETIES       Method = "dare-ties"
	SLERP          Method = "slerp"
	Fisher         Method = "fisher"
)

// nativeParams are the mergekit-named parameters of the methods of
// options.go (their other options have flags and config keys of their own).
var nativeParams = map[Method][]ParamSpec{
	Linear:         {pWeight, {Name: "normalize", Kind: "bool", Default: "true", Doc: "divide by the sum of the weights"}},
	TaskArithmetic: {pWeight, pLambda, pInt8, {Name: "normalize", Kind: "bool", Default: "false", Doc: "only false: task arithmetic sums the weighted deltas"}},
	TIES: {pWeight, {Name: "density", PerModel: true, Kind: "float", Default: "0.2", Doc: "fraction of each task vector kept, in (0, 1]"}, pLambda, pInt8,
		{Name: "normalize", Kind: "bool", Default: "true", Doc: "disjoint mean (true) or disjoint sum (false) of the agreeing deltas"}},
	DARE: {pWeight, {Name: "density", PerModel: true, Kind: "float", Default: "0.5", Doc: "keep probability of each delta entry"}, pLambda, pSeed},
	DARETIES: {pWeight, {Name: "density", PerModel: true, Kind: "float", Default: "0.5", Doc: "keep probability of each delta entry"}, pLambda, pSeed, pInt8,
		{Name: "normalize", Kind: "bool", Default: "true", Doc: "only true: dare-ties takes the disjoint mean"}},
	SLERP:  {{Name: "t", Kind: "float", Default: "", Doc: "interpolation parameter in [0, 1] (0: the base or first model)"}},
	Fisher: {pWeight},
}

// Methods lists the methods in the order the CLI documents them.
var Methods = []Method{Linear, TaskArithmetic, TIES, DARE, DARETIES, SLERP, Fisher,
	DARELinear, Breadcrumbs, BreadcrumbsTIES, Della, DellaLinear, ModelStock,
	NuSlerp, MultiSlerp, Karcher, SCE, NearSwap, ArceeFusion}

// ParseMethod parses a method name; mergekit's spellings with underscores
// ("task_arithmetic", "dare_ties", "model_stock"...) are accepted too.
// mergekit methods onnxpost does not run (passthrough...) are refused by
// name with the reason.
func ParseMethod(s string) (Method, error) {
	m := Method(strings.ReplaceAll(strings.ToLower(strings.TrimSpace(s)), "_", "-"))
	for _, k := range Methods {
		if m == k {
			return m, nil
		}
	}
	if why, ok := refusedMethods[string(m)]; ok {
		return "", fmt.Errorf("%w: method %q is not supported: %s", ErrOptions, s, why)
	}
	names := make([]string, len(Methods))
	for i, k := range Methods {
		names[i] = string(k)
	}
	return "", fmt.Errorf("%w: unknown method %q (want one of %s)", ErrOptions, s, strings.Join(names, ", "))
}

// NeedsBase reports whether the method takes deltas from a base model.
func (m Method) NeedsBase() bool {
	switch m {
	case TaskArithmetic, TIES, DARE, DARETIES:
		return true
	}
	return false
}

// DefaultDensity returns the method's default density: 0.2 for TIES, 0.5
// for DARE and DARE-TIES, 1 otherwise (unused).
func (m Method) DefaultDensity() float64 {
	switch m {
	case TIES:
		return 0.2
	case DARE, DARETIES:
		return 0.5
	}
	return 1
}

// TrimScope selects where TIES computes its magnitude threshold.
type TrimScope string

// Trim scopes.
const (
	// TrimGlobal: one threshold per model over all its merged tensors
	// (the TIES paper's reference code).
	TrimGlobal TrimScope = "global"
	// TrimTensor: one threshold per model and tensor (mergekit).
	TrimTensor TrimScope = "tensor"
)

// DefaultFisherFloor is the floor applied to Fisher values (mmatena's
// fisher_floor).
const DefaultFisherFloor = 1e-6

// ErrOptions reports invalid merge options (bad density, zero weight sum,
// wrong number of models...). Errors wrapping it are the user's to fix.
var ErrOptions = errors.New("merge: invalid options")

// Options configures a merge.
type Options struct {
	// Method is the merge method.
	Method Method
	// Weights are the per-model weights (nil: all 1). For linear they are
	// normalized by their sum unless NoNormalize.
	Weights []float64
	// Densities are the per-model densities in (0, 1] (nil: all Density).
	Densities []float64
	// Density is the density of every model without its own (0: the
	// method's default, see Method.DefaultDensity).
	Density float64
	// Lambda scales the merged delta (task arithmetic, TIES, DARE). Nil
	// means 1.
	Lambda *float64
	// NoNormalize makes linear a plain weighted sum.
	NoNormalize bool
	// TrimScope is TIES's trim scope ("" means TrimGlobal).
	TrimScope TrimScope
	// T is SLERP's interpolation parameter in [0, 1] (required for SLERP).
	T *float64
	// Seed seeds DARE's drops.
	Seed int64
	// FisherFloor floors Fisher values (0 means DefaultFisherFloor).
	FisherFloor float64
	// FisherNormalize divides each model's coefficient by the L2 norm of
	// its Fisher over the merged tensors.
	FisherNormalize bool
	// Mergekit holds the parameters of the mergekit methods
	// (methods_mergekit.go).
	Mergekit MethodParams
	// TIESDisjointSum makes TIES add the agreeing deltas instead of
	// averaging them (mergekit's ties with normalize: false).
	TIESDisjointSum bool
	// RequireLayers, when positive, is the number of layers (FindLayers)
	// the template must have: a mergekit slices: config's layer_range.
	RequireLayers int
	// Tensor holds parameters that vary by tensor (mergekit gradients and
	// filters, settings.go); nil when none does.
	Tensor *TensorSettings
	// Include and Exclude select the merged tensors by output name: a
	// tensor is merged when it matches Include (nil: all) and not Exclude
	// (nil: none). Unselected tensors keep the template's values (the base
	// model's when there is one, else the first model's).
	Include, Exclude *regexp.Regexp
}

// lambda returns λ (default 1).
func (o *Options) lambda() float64 {
	if o.Lambda == nil {
		return 1
	}
	return *o.Lambda
}

// Validate checks the options for n models (not counting the base) and
// fills the per-model slices: after it, Weights and Densities have n
// entries. Errors wrap ErrOptions.
func (o *Options) Validate(n int, haveBase bool) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrOptions}, args...)...)
	}
	if _, err := ParseMethod(string(o.Method)); err != nil {
		return err
	}
	if spec, ok := mergekitMethods[o.Method]; ok {
		return o.validateMergekit(spec, n, haveBase)
	}
	switch {
	case n < 1:
		return bad("no models to merge")
	case o.Method == SLERP && !(n == 2 && !haveBase || n == 1 && haveBase):
		return bad("slerp interpolates exactly two models (two models, or a base model and one model); got %d%s", n, map[bool]string{true: " and a base", false: ""}[haveBase])
	case o.Method.NeedsBase() && !haveBase:
		return bad("%s needs a base model (the model the deltas are taken from)", o.Method)
	case !o.Method.NeedsBase() && o.Method != SLERP && haveBase:
		return bad("%s does not use a base model; drop the base model or list it among the models", o.Method)
	}
	if o.Weights == nil {
		o.Weights = make([]float64, n)
		for i := range o.Weights {
			o.Weights[i] = 1
		}
	}
	if len(o.Weights) != n {
		return bad("%d weights for %d models", len(o.Weights), n)
	}
	for i, w := range o.Weights {
		if math.IsNaN(w) || math.IsInf(w, 0) {
			return bad("weight %d is %v", i+1, w)
		}
	}
	if sum(normalizedScale(o.Weights)) == 0 && o.Method != SLERP {
		return bad("weights %v sum to zero", o.Weights)
	}
	if o.Method == Fisher {
		for i, w := range o.Weights {
			if w < 0 {
				return bad("fisher weight %d is negative (%v)", i+1, w)
			}
		}
	}
	d := o.Density
	if d == 0 {
		d = o.Method.DefaultDensity()
	}
	if o.Densities == nil {
		o.Densities = make([]float64, n)
		for i := range o.Densities {
			o.Densities[i] = d
		}
	}
	if len(o.Densities) != n {
		return bad("%d densities for %d models", len(o.Densities), n)
	}
	for i, d := range append([]float64{d}, o.Densities...) {
		if !(d > 0 && d <= 1) {
			what := "the density parameter"
			if i > 0 {
				what = fmt.Sprintf("density of model %d", i)
			}
			return bad("%s = %v is outside (0, 1]", what, d)
		}
	}
	if l := o.lambda(); math.IsNaN(l) || math.IsInf(l, 0) {
		return bad("lambda is %v", l)
	}
	switch o.TrimScope {
	case "":
		o.TrimScope = TrimGlobal
	case TrimGlobal, TrimTensor:
	default:
		return bad("trim scope %q (want global or tensor)", o.TrimScope)
	}
	if o.Method == SLERP {
		if o.T == nil {
			return bad("slerp needs the t parameter (0 gives the first model, 1 the second)")
		}
		if t := *o.T; !(t >= 0 && t <= 1) {
			return bad("the t parameter = %v is outside [0, 1]", t)
		}
	}
	if o.FisherFloor < 0 || math.IsNaN(o.FisherFloor) {
		return bad("fisher floor %v is negative", o.FisherFloor)
	}
	if o.FisherFloor == 0 {
		o.FisherFloor = DefaultFisherFloor
	}
	return nil
}

// Selected reports whether the tensor named name is merged.
func (o *Options) Selected(name string) bool {
	if o.Include != nil && !o.Include.MatchString(name) {
		return false
	}
	return o.Exclude == nil || !o.Exclude.MatchString(name)
}

// Params returns the options as provenance key/value pairs (method,
// weights, densities, lambda... as they apply to the method).
func (o *Options) Params() map[string]string {
	p := map[string]string{"method": string(o.Method)}
	f := func(x float64) string { return fmt.Sprintf("%g", x) }
	fs := func(xs []float64) string {
		s := make([]string, len(xs))
		for i, x := range xs {
			s[i] = f(x)
		}
		return strings.Join(s, ",")
	}
	p["weights"] = fs(o.Weights)
	switch o.Method {
	case Linear:
		p["normalize"] = fmt.Sprint(!o.NoNormalize)
	case TaskArithmetic:
		p["lambda"] = f(o.lambda())
	case TIES:
		p["lambda"], p["densities"], p["trim_scope"] = f(o.lambda()), fs(o.Densities), string(o.TrimScope)
		if o.TIESDisjointSum {
			p["normalize"] = "false"
		}
	case DARE, DARETIES:
		p["lambda"], p["densities"], p["seed"] = f(o.lambda()), fs(o.Densities), fmt.Sprint(o.Seed)
	case SLERP:
		p["t"] = f(*o.T)
	case Fisher:
		p["fisher_floor"], p["fisher_normalize"] = f(o.FisherFloor), fmt.Sprint(o.FisherNormalize)
	default:
		o.mergekitParams(p)
	}
	if o.Include != nil {
		p["include"] = o.Include.String()
	}
	if o.Exclude != nil {
		p["exclude"] = o.Exclude.String()
	}
	if o.Tensor != nil {
		p["per_tensor"] = o.Tensor.describe()
	}
	return p
}
