package merge

// DellaLinear is mergekit's della_linear: MagPrune drops, Σ wᵢτ̃ᵢ. Its
// kernel is in della.go (shared with della).
const DellaLinear Method = "della-linear"

// dellaLinearSpec declares DellaLinear's base model rule, model count and
// parameters.
var dellaLinearSpec = methodSpec{base: baseRequired, minModels: 1, gta: true, defRescl: true,
	params: gtaParams(false, true, pEpsilon, pSeed),
	doc:    "MagPrune drops, Σ wᵢτ̃ᵢ"}
