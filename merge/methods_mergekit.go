package merge

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// refusedMethods are mergekit methods onnxpost knows but does not run,
// with the reason.
var refusedMethods = map[string]string{
	"passthrough": "it stacks layers instead of merging weights: write it as a config with slices (LoadConfig)",
	"ram":         "not implemented",
	"ramplus-tl":  "not implemented",
}

// baseRule says whether a method takes a base model.
type baseRule int

const (
	baseNone     baseRule = iota // refuses a base
	baseRequired                 // needs one
	baseOptional                 // task vectors with a base, the models themselves without
)

// ParamSpec declares one parameter of a method, with mergekit's name.
type ParamSpec struct {
	// Name is mergekit's name of the parameter (weight, density, gamma...).
	Name string
	// PerModel is true for parameters each model may set (mergekit's
	// tensor parameters); they may also be set globally as the default.
	PerModel bool
	// Kind is "float", "bool" or "int".
	Kind string
	// Default is the default value as text ("" when required).
	Default string
	// Doc says what it does.
	Doc string
}

type methodSpec struct {
	base                   baseRule
	minModels, maxModels   int // maxModels 0: no limit
	gta                    bool
	consensus              bool
	defNormalize, defRescl bool
	params                 []ParamSpec
	doc                    string
}

var (
	pWeight  = ParamSpec{Name: "weight", PerModel: true, Kind: "float", Default: "1", Doc: "the model's weight wᵢ"}
	pDensity = ParamSpec{Name: "density", PerModel: true, Kind: "float", Default: "1", Doc: "fraction of the task vector kept, in (0, 1]"}
	pLambda  = ParamSpec{Name: "lambda", Kind: "float", Default: "1", Doc: "scale of the merged delta"}
	pInt8    = ParamSpec{Name: "int8_mask", Kind: "bool", Default: "false", Doc: "mergekit's memory saving for masks; no effect on the values (masks are never stored here)"}
	pSeed    = ParamSpec{Name: "seed", Kind: "int", Default: "0", Doc: "seed of the counter-based random drops"}
)

func gtaParams(normalize, rescale bool, extra ...ParamSpec) []ParamSpec {
	return append([]ParamSpec{pWeight, pDensity, pLambda,
		{Name: "normalize", Kind: "bool", Default: strconv.FormatBool(normalize), Doc: "divide the mixed delta by the sum of the (agreeing) weights"},
		{Name: "rescale", Kind: "bool", Default: strconv.FormatBool(rescale), Doc: "match each sparsified task vector's L1 norm to the original's"},
		pInt8}, extra...)
}

var (
	pGamma   = ParamSpec{Name: "gamma", PerModel: true, Kind: "float", Default: "0.01", Doc: "fraction of the largest |τ| dropped, in [0, 1)"}
	pEpsilon = ParamSpec{Name: "epsilon", PerModel: true, Kind: "float", Default: "0.15", Doc: "half-width of the keep probabilities around density; density ± epsilon must lie in (0, 1)"}
)

// mergekitMethods indexes the methods mergekit has beside the ones of
// options.go; each is declared (its name and methodSpec) in its own file,
// beside its kernel. Their names are mergekit's with dashes; ParseMethod
// takes both.
var mergekitMethods = map[Method]methodSpec{
	DARELinear:      dareLinearSpec,
	Breadcrumbs:     breadcrumbsSpec,
	BreadcrumbsTIES: breadcrumbsTIESSpec,
	Della:           dellaSpec,
	DellaLinear:     dellaLinearSpec,
	ModelStock:      modelStockSpec,
	NuSlerp:         nuSlerpSpec,
	MultiSlerp:      multiSlerpSpec,
	Karcher:         karcherSpec,
	SCE:             sceSpec,
	NearSwap:        nearSwapSpec,
	ArceeFusion:     arceeFusionSpec,
}

// Params returns the parameters the method declares, with mergekit's
// names: those a config's parameters (or the param parameter) may set.
func (m Method) Params() []ParamSpec {
	if p, ok := nativeParams[m]; ok {
		return p
	}
	return mergekitMethods[m].params
}

// paramSpec returns the declaration of parameter name (dashes accepted)
// of method m, or an error naming the parameters it takes.
func paramSpec(m Method, name string) (ParamSpec, error) {
	key := strings.ReplaceAll(strings.TrimSpace(name), "-", "_")
	for _, p := range m.Params() {
		if p.Name == key {
			return p, nil
		}
	}
	return ParamSpec{}, fmt.Errorf("%w: method %s has no parameter %q (it takes %s)", ErrOptions, m, name, paramNames(m))
}

// Doc returns a one-line definition of a mergekit method, with its use of
// a base model ("" for the methods of options.go).
func (m Method) Doc() string {
	spec, ok := mergekitMethods[m]
	if !ok {
		return ""
	}
	return spec.doc + [...]string{baseNone: " (no base model)", baseRequired: " (needs a base model)", baseOptional: " (base model optional: task vectors)"}[spec.base]
}

// MethodParams holds the parameters of the mergekit methods (see
// Method.Params); nil or zero means the method's default.
type MethodParams struct {
	// Gammas and Epsilons are per-model (breadcrumbs, della); Gamma and
	// Epsilon the values of models without their own (nil: 0.01, 0.15).
	Gammas, Epsilons []float64
	Gamma, Epsilon   *float64
	// Normalize and Rescale override the GTA methods' defaults.
	Normalize, Rescale *bool
	// Int8Mask is accepted for mergekit configs; it changes nothing.
	Int8Mask bool
	// FilterWise is model_stock's filter_wise.
	FilterWise bool
	// NuSlerpFlatten (nil: true) and NuSlerpRowWise are nuslerp's.
	NuSlerpFlatten *bool
	NuSlerpRowWise bool
	// NormalizeWeights is multislerp's (nil: true).
	NormalizeWeights *bool
	// MaxIter (0: 10) and Tol (0: 1e-5) are karcher's.
	MaxIter int
	Tol     float64
	// SelectTopK is sce's (nil: 1).
	SelectTopK *float64
}

func boolOr(p *bool, def bool) bool {
	if p == nil {
		return def
	}
	return *p
}

// SetParam sets the global parameter name (mergekit's spelling, dashes
// accepted) from its text value, for the method the options hold: the
// shared path of the param parameter and the config's parameters. Names the
// method does not declare are refused.
func (o *Options) SetParam(name, value string) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrOptions}, args...)...)
	}
	spec, err := paramSpec(o.Method, name)
	if err != nil {
		return err
	}
	key := spec.Name
	var f float64
	var b bool
	switch spec.Kind {
	case "float":
		f, err = strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err == nil && (math.IsNaN(f) || math.IsInf(f, 0)) {
			err = fmt.Errorf("not finite")
		}
	case "int":
		var i int64
		i, err = strconv.ParseInt(strings.TrimSpace(value), 10, 64)
		f = float64(i)
	case "bool":
		b, err = strconv.ParseBool(strings.TrimSpace(value))
	}
	if err != nil {
		return bad("parameter %s: %q is not a %s", key, value, spec.Kind)
	}
	mp := &o.Mergekit
	switch key {
	case "weight", "density":
		return bad("parameter %s is set per model (the weights parameter, the density parameter, or models: parameters: in a config)", key)
	case "lambda":
		o.Lambda = &f
	case "seed":
		o.Seed = int64(f)
	case "normalize":
		switch o.Method {
		case Linear:
			o.NoNormalize = !b
		case TIES:
			o.TIESDisjointSum = !b
		case TaskArithmetic, DARETIES:
			if want := o.Method == DARETIES; b != want {
				return bad("%s takes normalize: %v only (onnxpost's definition; mergekit's ties with normalize is method ties)", o.Method, want)
			}
		default:
			mp.Normalize = &b
		}
	case "rescale":
		mp.Rescale = &b
	case "int8_mask":
		mp.Int8Mask = b
	case "gamma":
		mp.Gamma = &f
	case "epsilon":
		mp.Epsilon = &f
	case "filter_wise":
		mp.FilterWise = b
	case "nuslerp_flatten":
		mp.NuSlerpFlatten = &b
	case "nuslerp_row_wise":
		mp.NuSlerpRowWise = b
	case "normalize_weights":
		mp.NormalizeWeights = &b
	case "max_iter":
		mp.MaxIter = int(f)
		if f < 1 {
			return bad("max_iter = %v, want ≥ 1", f)
		}
	case "tol":
		mp.Tol = f
	case "select_topk":
		mp.SelectTopK = &f
	case "t":
		o.T = &f
	default:
		return bad("parameter %q is declared but not handled (internal)", key)
	}
	return nil
}

func paramNames(m Method) string {
	var s []string
	for _, p := range m.Params() {
		s = append(s, p.Name)
	}
	if len(s) == 0 {
		return "no parameters"
	}
	sort.Strings(s)
	return strings.Join(s, ", ")
}

// validateMergekit is Validate for the methods of this file.
func (o *Options) validateMergekit(spec methodSpec, n int, haveBase bool) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrOptions}, args...)...)
	}
	m := o.Method
	switch {
	case n < spec.minModels:
		return bad("%s needs at least %d model(s) besides the base; got %d", m, spec.minModels, n)
	case spec.maxModels > 0 && n > spec.maxModels:
		return bad("%s takes at most %d model(s) besides the base; got %d", m, spec.maxModels, n)
	case spec.base == baseRequired && !haveBase:
		return bad("%s needs a base model (base_model)", m)
	case spec.base == baseNone && haveBase:
		return bad("%s does not use a base model; drop the base model or list it among the models", m)
	}
	declared := func(name string) bool { _, err := paramSpec(m, name); return err == nil }
	if !declared("weight") {
		for _, w := range o.Weights {
			if w != 1 {
				return bad("%s takes no weights (it weighs the models itself); got %v", m, o.Weights)
			}
		}
	}
	if !declared("density") {
		for _, d := range append([]float64{o.Density}, o.Densities...) {
			if d != 0 && d != 1 {
				return bad("%s takes no density; got %v", m, d)
			}
		}
	}
	if l := o.lambda(); !declared("lambda") && l != 1 {
		return bad("%s takes no lambda; got %v", m, l)
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
	if m == MultiSlerp && boolOr(o.Mergekit.NormalizeWeights, true) && sum(o.Weights) == 0 {
		return bad("multislerp weights %v sum to zero", o.Weights)
	}
	fill := func(what string, xs *[]float64, def float64) error {
		if *xs == nil {
			*xs = make([]float64, n)
			for i := range *xs {
				(*xs)[i] = def
			}
		}
		if len(*xs) != n {
			return bad("%d %s for %d models", len(*xs), what, n)
		}
		return nil
	}
	d := o.Density
	if d == 0 {
		d = 1
	}
	if err := fill("densities", &o.Densities, d); err != nil {
		return err
	}
	for i, d := range o.Densities {
		if !(d > 0 && d <= 1) {
			return bad("density of model %d = %v is outside (0, 1]", i+1, d)
		}
	}
	mp := &o.Mergekit
	g, e := 0.01, 0.15
	if mp.Gamma != nil {
		g = *mp.Gamma
	}
	if mp.Epsilon != nil {
		e = *mp.Epsilon
	}
	if err := fill("gammas", &mp.Gammas, g); err != nil {
		return err
	}
	for i, g := range mp.Gammas {
		if !(g >= 0 && g < 1) {
			return bad("gamma of model %d = %v is outside [0, 1)", i+1, g)
		}
	}
	if err := fill("epsilons", &mp.Epsilons, e); err != nil {
		return err
	}
	if m == Della || m == DellaLinear {
		for i, e := range mp.Epsilons {
			if d := o.Densities[i]; d < 1 && !(e >= 0 && d-e > 0 && d+e < 1) {
				return bad("model %d: density ± epsilon = %v ± %v must lie in (0, 1)", i+1, d, e)
			}
		}
	}
	if l := o.lambda(); math.IsNaN(l) || math.IsInf(l, 0) {
		return bad("lambda is %v", l)
	}
	if mp.MaxIter == 0 {
		mp.MaxIter = 10
	}
	if mp.Tol == 0 {
		mp.Tol = 1e-5
	}
	if mp.MaxIter < 1 || !(mp.Tol > 0) {
		return bad("karcher max_iter = %d, tol = %v: want max_iter ≥ 1 and tol > 0", mp.MaxIter, mp.Tol)
	}
	if k := mp.SelectTopK; k != nil && !(*k >= 0 && *k <= 1) {
		return bad("select_topk = %v is outside [0, 1]", *k)
	}
	if m == NearSwap {
		if o.T == nil {
			return bad("nearswap needs the t parameter (parameters: t in a config)")
		}
		if !(*o.T > 0) || math.IsInf(*o.T, 0) {
			return bad("nearswap t = %v, want a finite t > 0", *o.T)
		}
	} else if o.T != nil {
		return bad("%s has no parameter t", m)
	}
	return nil
}

// mergekitParams adds the parameters of a mergekit method to p.
func (o *Options) mergekitParams(p map[string]string) {
	spec, ok := mergekitMethods[o.Method]
	if !ok {
		return
	}
	f := func(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) }
	fs := func(xs []float64) string {
		s := make([]string, len(xs))
		for i, x := range xs {
			s[i] = f(x)
		}
		return strings.Join(s, ",")
	}
	mp := &o.Mergekit
	for _, ps := range spec.params {
		switch ps.Name {
		case "weight":
		case "density":
			p["densities"] = fs(o.Densities)
		case "lambda":
			p["lambda"] = f(o.lambda())
		case "seed":
			p["seed"] = fmt.Sprint(o.Seed)
		case "normalize":
			p["normalize"] = fmt.Sprint(boolOr(mp.Normalize, spec.defNormalize))
		case "rescale":
			p["rescale"] = fmt.Sprint(boolOr(mp.Rescale, spec.defRescl))
		case "int8_mask":
			p["int8_mask"] = fmt.Sprint(mp.Int8Mask)
		case "gamma":
			p["gammas"] = fs(mp.Gammas)
		case "epsilon":
			p["epsilons"] = fs(mp.Epsilons)
		case "filter_wise":
			p["filter_wise"] = fmt.Sprint(mp.FilterWise)
		case "nuslerp_flatten":
			p["nuslerp_flatten"] = fmt.Sprint(boolOr(mp.NuSlerpFlatten, true))
		case "nuslerp_row_wise":
			p["nuslerp_row_wise"] = fmt.Sprint(mp.NuSlerpRowWise)
		case "normalize_weights":
			p["normalize_weights"] = fmt.Sprint(boolOr(mp.NormalizeWeights, true))
		case "max_iter":
			p["max_iter"] = fmt.Sprint(mp.MaxIter)
		case "tol":
			p["tol"] = f(mp.Tol)
		case "select_topk":
			k := 1.0
			if mp.SelectTopK != nil {
				k = *mp.SelectTopK
			}
			p["select_topk"] = f(k)
		case "t":
			p["t"] = f(*o.T)
		}
	}
}
