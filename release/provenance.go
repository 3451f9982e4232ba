package release

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"

	"github.com/onnxpost/onnxpost/internal/filehash"
	"github.com/onnxpost/onnxpost/onnxio"
)

// Version is the onnxpost version recorded in outputs' provenance.
const Version = "0.1.0-dev"

// Metadata keys of the provenance Commit records in the model.
const (
	// MetaVersion holds Provenance.Version.
	MetaVersion = "onnxpost.version"
	// MetaCommand holds Provenance.Command (the CLI's command line).
	MetaCommand = "onnxpost.command"
	// MetaInputs holds Provenance.Inputs as a JSON array of
	// {"path", "sha256", "data"} objects ordered by path.
	MetaInputs = "onnxpost.inputs"
)

// Provenance is what Commit records in a model's metadata_props. The
// transforms record their own parameters besides (e.g. onnxpost.merge.*,
// onnxpost.sparsity), so a model's metadata describes the chain that made
// it: the same chain run from the CLI, a recipe or a Go program records
// the same metadata.
type Provenance struct {
	// Version is the tool version (MetaVersion; "" records none).
	Version string
	// Command is the command line that made the model (MetaCommand; ""
	// records none).
	Command string
	// Inputs are the files the model was derived from (MetaInputs; none
	// recorded when empty), e.g. from HashInputs.
	Inputs []Input
}

// Input is one input file of a model and its SHA-256.
type Input struct {
	// Path is the file as given.
	Path string `json:"path"`
	// SHA256 is the hex digest of the file's bytes.
	SHA256 string `json:"sha256"`
	// Data maps each external data file the model references (location as
	// written in the model) to its hex digest.
	Data map[string]string `json:"data,omitempty"`
}

// HashFile returns the hex SHA-256 of the file at path (read once per
// process for a given size and modification time: see internal/filehash).
func HashFile(path string) (string, error) { return filehash.File(path) }

// HashInput hashes the file at path and, when it is an ONNX model with
// external data, each data file it references.
func HashInput(path string) (Input, error) {
	h, err := HashFile(path)
	if err != nil {
		return Input{}, err
	}
	in := Input{Path: path, SHA256: h}
	locs, err := onnxio.DataFiles(path)
	if err != nil {
		return in, nil // not a model (a dataset, a config): its bytes alone
	}
	for _, loc := range locs {
		dh, err := HashFile(filepath.Join(filepath.Dir(path), loc))
		if err != nil {
			return Input{}, fmt.Errorf("external data of %s: %w", path, err)
		}
		if in.Data == nil {
			in.Data = map[string]string{}
		}
		in.Data[loc] = dh
	}
	return in, nil
}

// HashInputs hashes every path (HashInput), in order.
func HashInputs(paths ...string) ([]Input, error) {
	out := make([]Input, 0, len(paths))
	for _, p := range paths {
		in, err := HashInput(p)
		if err != nil {
			return nil, err
		}
		out = append(out, in)
	}
	return out, nil
}

// Record writes p into m's metadata; a nil p records nothing. Inputs are
// recorded once per path, ordered by path, so the order in which a caller
// lists them does not change the bytes.
func (p *Provenance) Record(m *onnxio.Model) error {
	if p == nil {
		return nil
	}
	if p.Version != "" {
		m.SetMetadata(MetaVersion, p.Version)
	}
	if p.Command != "" {
		m.SetMetadata(MetaCommand, p.Command)
	}
	if len(p.Inputs) > 0 {
		seen := map[string]bool{}
		var ins []Input
		for _, in := range p.Inputs {
			if !seen[in.Path] {
				seen[in.Path] = true
				ins = append(ins, in)
			}
		}
		sort.Slice(ins, func(i, j int) bool { return ins[i].Path < ins[j].Path })
		b, err := json.Marshal(ins)
		if err != nil {
			return err
		}
		m.SetMetadata(MetaInputs, string(b))
	}
	return nil
}

// Params counts the elements of the model's parameter tensors; the packed
// weights of MatMulNBits nodes count as their K×N logical weights,
// quantization scales and zero points do not count. Weights in subgraphs,
// sparse initializers and already-quantized weights count
// (onnxio.Model.AllWeights), and MatMulNBits nodes inside subgraphs too,
// each packed weight once.
func Params(m *onnxio.Model) (int64, error) {
	ws, err := m.AllWeights()
	if err != nil {
		return 0, err
	}
	var n int64
	for _, w := range ws {
		if w.Role != onnxio.RoleQuantParam {
			n += w.Params()
		}
	}
	packed := map[string]bool{} // one packed weight read by both branches of an If counts once
	count := func(nd onnxio.Node) {
		if nd.OpType == "MatMulNBits" && len(nd.Inputs) > 1 && !packed[nd.Inputs[1]] {
			packed[nd.Inputs[1]] = true
			n += nd.Int("K", 0) * nd.Int("N", 0)
		}
	}
	for _, nd := range m.Nodes() {
		count(nd)
		for _, sn := range onnxio.SubgraphNodes(nd) {
			count(sn)
		}
	}
	return n, nil
}
