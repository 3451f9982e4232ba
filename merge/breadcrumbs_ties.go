package merge

// BreadcrumbsTIES is mergekit's breadcrumbs_ties: breadcrumbs
// sparsification, then sign election on wᵢτ̃ᵢ. Its kernel is in
// breadcrumbs.go (shared with breadcrumbs).
const BreadcrumbsTIES Method = "breadcrumbs-ties"

// breadcrumbsTIESSpec declares BreadcrumbsTIES's base model rule, model
// count and parameters.
var breadcrumbsTIESSpec = methodSpec{base: baseRequired, minModels: 1, gta: true, consensus: true,
	params: gtaParams(false, false, pGamma),
	doc:    "breadcrumbs sparsification, then sign election on wᵢτ̃ᵢ"}
