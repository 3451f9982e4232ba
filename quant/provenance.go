package quant

import (
	"fmt"

	"github.com/onnxpost/onnxpost/onnxio"
)

// MetaQuant is the metadata key in which Quantize records what it did:
// the scheme (Report.Mode) and the number of weights quantized, so that a
// model's metadata describes every step of the chain that made it.
const MetaQuant = "onnxpost.quant"

func recordProvenance(m *onnxio.Model, rep *Report) {
	m.SetMetadata(MetaQuant, fmt.Sprintf("%s, %d weights", rep.Mode, len(rep.Layers)))
}
