package merge

import "github.com/onnxpost/onnxpost/onnxio"

// Sources hashes input files for provenance (SetProvenance): one Source
// per path, with role ("base", "model", "fisher", ...). models, when not
// nil, are the loaded models of paths: their external data files are
// hashed too.
func Sources(role string, paths []string, models []*onnxio.Model) ([]Source, error) {
	var out []Source
	for i, p := range paths {
		h, err := FileSHA256(p)
		if err != nil {
			return nil, err
		}
		src := Source{Role: role, Path: p, SHA256: h}
		if models != nil {
			locs, files, err := models[i].ExternalFiles()
			if err != nil {
				return nil, err
			}
			for k, f := range files {
				dh, err := FileSHA256(f)
				if err != nil {
					return nil, err
				}
				if src.Data == nil {
					src.Data = map[string]string{}
				}
				src.Data[locs[k]] = dh
			}
		}
		out = append(out, src)
	}
	return out, nil
}
