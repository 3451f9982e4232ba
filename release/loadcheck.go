package release

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/onnxio"
)

// inMemoryLoadLimit is the tensor size above which CheckLoads saves the
// candidate with external data to check it (ONNX Runtime reads one
// serialized model of at most 2 GB).
const inMemoryLoadLimit = 1 << 30

// CheckLoads creates (and closes) an ONNX Runtime session on m, so that a
// model ONNX Runtime rejects is never written. When the library cannot be
// found and none was named (so.Library, $ONNXPOST_ORT_LIB), the check
// cannot run: it writes a warning, prefixed with command, to log and
// returns nil. A model whose tensors pass 1 GiB, or that holds spilled
// tensors (onnxio's Spill), is saved with external data in a temporary
// folder inside the folder of output and checked from there, with weight
// pre-packing off.
func CheckLoads(m *onnxio.Model, so evalharness.SessionOptions, output, command string, log io.Writer) error {
	var s *evalharness.Session
	var err error
	if m.TensorBytes() > inMemoryLoadLimit || m.Spilled() > 0 {
		// from a file, its weights mapped rather than copied (a check
		// runs nothing, so pre-packing would only cost memory)
		so.NoPrepack = true
		s, err = sessionFromTempSave(m, so, filepath.Dir(output))
	} else {
		s, err = evalharness.SessionFromModel(m, so)
	}
	if err == nil {
		s.Close()
		return nil
	}
	if errors.Is(err, evalharness.ErrNoLibrary) && so.Library == "" && os.Getenv(evalharness.LibraryEnv) == "" {
		if log != nil {
			fmt.Fprintf(log, "%s: warning: ONNX Runtime not found, the output was not checked to load (%v)\n", command, err)
		}
		return nil
	}
	return fmt.Errorf("the transformed model does not load in ONNX Runtime, nothing written: %w", err)
}

// sessionFromTempSave saves m with external data in a temporary folder
// inside dir, opens a session on it and removes the folder.
func sessionFromTempSave(m *onnxio.Model, so evalharness.SessionOptions, dir string) (*evalharness.Session, error) {
	tmp, err := os.MkdirTemp(dir, ".onnxpost-loadcheck-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	p := filepath.Join(tmp, "candidate.onnx")
	if err := m.Save(p, &onnxio.SaveOptions{External: onnxio.ExternalAlways}); err != nil {
		return nil, err
	}
	return evalharness.NewSessionFromFile(p, so)
}
