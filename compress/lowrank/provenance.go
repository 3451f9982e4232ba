package lowrank

import (
	"fmt"

	"github.com/onnxpost/onnxpost/onnxio"
)

// MetaLowrank is the metadata key in which Apply records what it did: the
// scheme, the rank rule, the layers factorized and the parameters before
// and after, so that a model's metadata describes every step of the chain
// that made it.
const MetaLowrank = "onnxpost.lowrank"

func recordProvenance(m *onnxio.Model, rep *Report) {
	m.SetMetadata(MetaLowrank, fmt.Sprintf("%s %s, %d layers factorized, %d → %d parameters",
		rep.Scheme, rep.Rule, rep.Factorized, rep.ModelParamsBefore, rep.ModelParamsAfter))
}
