package fisher

import (
	"fmt"
	"io"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/onnxio"
)

// DataBranch returns m, or for an If-merged decoder (onnxio.IfMerged) the
// branch the dataset takes, lifted into a plain model
// (onnxio.Model.DataBranch: the first branch whose every input the
// dataset holds, the no-cache branch of a decoder whose dataset has no
// past_key_values). Its parameters are the merged model's weights under
// their own names, so the Fisher file describes the merged model too. The
// branch chosen is named on log (nil: nowhere). ComputeResult and FromData
// take the same branch of a merged decoder by themselves.
func DataBranch(m *onnxio.Model, ds *evalharness.Dataset, log io.Writer) (*onnxio.Model, error) {
	if _, ok := m.IfMerged(); !ok {
		return m, nil
	}
	b, err := m.DataBranch(func(name string) bool { _, ok := ds.Inputs[name]; return ok })
	if err != nil {
		return nil, fmt.Errorf("fisher: If-merged decoder: %w", err)
	}
	if log != nil {
		fmt.Fprintf(log, "fisher: If-merged decoder: computing the Fisher of its %s (the branch the data takes)\n", b.Attr)
	}
	return b.Model, nil
}
