package fisher

import (
	"fmt"
	"io"
	"strings"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/onnxio"
)

// DataBranch returns m, or for an If-merged decoder (onnxio.IfMerged) the
// branch the dataset takes, lifted into a plain model: the first branch
// whose every input the dataset holds (the no-cache branch of a decoder
// whose dataset has no past_key_values). Its parameters are the merged
// model's weights under their own names, so the Fisher file describes the
// merged model too. The branch chosen is named on log (nil: nowhere).
func DataBranch(m *onnxio.Model, ds *evalharness.Dataset, log io.Writer) (*onnxio.Model, error) {
	if _, ok := m.IfMerged(); !ok {
		return m, nil
	}
	bs, err := m.LiftBranches()
	if err != nil {
		return nil, err
	}
	var tried []string
	for _, b := range bs {
		missing := ""
		for _, in := range b.Model.Inputs() {
			if _, ok := ds.Inputs[in.Name]; !ok {
				missing = in.Name
				break
			}
		}
		if missing == "" {
			if log != nil {
				fmt.Fprintf(log, "fisher: If-merged decoder: computing the Fisher of its %s (the branch the data takes)\n", b.Attr)
			}
			return b.Model, nil
		}
		tried = append(tried, fmt.Sprintf("%s needs %q", b.Attr, missing))
	}
	return nil, fmt.Errorf("fisher: If-merged decoder: the dataset holds the inputs of no branch (%s)", strings.Join(tried, "; "))
}
