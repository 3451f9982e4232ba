package pipeline

import (
	"context"

	"github.com/onnxpost/onnxpost/calib"
	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/onnxio"
)

// This file holds what the search spaces share; each space has its own
// file: search_sparsity.go, search_rank.go, search_bits.go, search_drop.go
// and search_combined.go.

// calibSource gives the spaces of one search run one shared calibration
// of the dense model (an evalharness.Calibrator): the combined space's
// sparsity and bits ladders declare their needs on the same capture, which
// runs on the first read only, so a run whose levels are all in the disk
// cache never captures.
type calibSource struct {
	ctx  context.Context
	m    *onnxio.Model
	ds   *evalharness.Dataset
	opt  LevelSearch
	logf func(string, ...any)
	cal  *evalharness.Calibrator
	hash string
}

func newCalibSource(ctx context.Context, m *onnxio.Model, ds *evalharness.Dataset, opt LevelSearch, logf func(string, ...any)) *calibSource {
	return &calibSource{ctx: ctx, m: m, ds: ds, opt: opt, logf: logf}
}

// need declares r on the shared calibration and returns it with the hash
// of its data (the level cache's CalibHash).
func (s *calibSource) need(r calib.Request) (*evalharness.Calibrator, string, error) {
	if s.cal == nil {
		ds, err := subset(s.ds, s.opt.CalibSamples)
		if err != nil {
			return nil, "", err
		}
		s.cal = evalharness.NewCalibrator(s.ctx, s.m, ds, evalharness.CaptureOptions{Batch: s.opt.Batch, Session: s.opt.Session})
		s.cal.Log = s.logf
		s.hash = DatasetHash(ds)
	}
	s.cal.Need(r)
	return s.cal, s.hash, nil
}

func weightNames(ws []onnxio.Weight) []string {
	names := make([]string, len(ws))
	for i, w := range ws {
		names[i] = w.Name
	}
	return names
}
func weightValues(m *onnxio.Model, w onnxio.Weight) ([]float32, error) {
	t, err := m.Initializer(w.Name)
	if err != nil {
		return nil, err
	}
	return t.Float32()
}
