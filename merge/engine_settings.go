package merge

import "fmt"

// optionsFor returns the options of plan entry p: its own when parameters
// vary by tensor, else the merge's.
func (m *Merger) optionsFor(p *TensorPlan) *Options {
	if m.popts == nil {
		return &m.opt
	}
	return m.popts[m.index[p.Out]]
}

// resolveTensorSettings evaluates Options.Tensor for every merged tensor
// (gradients across the template's layers, filters on the tensors' names)
// and validates the result, before any tensor is read.
func (m *Merger) resolveTensorSettings(label func(int) string) error {
	ts := m.opt.Tensor
	if ts == nil && m.opt.RequireLayers == 0 {
		return nil
	}
	layers := FindLayers(m.template)
	if r := m.opt.RequireLayers; r > 0 && layers.Count != r {
		return fmt.Errorf("%w: layer_range [0, %d], but the model has %d layers: only a slice over all layers is supported (layer stacking is not)", ErrOptions, r, layers.Count)
	}
	if ts == nil {
		return nil
	}
	if len(ts.PerModel) != len(m.in.Models) {
		return fmt.Errorf("%w: per-model settings for %d models, %d models given", ErrOptions, len(ts.PerModel), len(m.in.Models))
	}
	if ts.needsLayers() && layers.Count == 0 {
		tl := label(-1)
		if m.in.Base == nil {
			tl = label(0)
		}
		return fmt.Errorf("%w: gradient parameters are interpolated across layers, and %s has none (no residual block with weights found in its graph)", ErrOptions, tl)
	}
	if m.opt.Method == TIES && m.opt.TrimScope == TrimGlobal && settingVaries(ts, "density") {
		return fmt.Errorf("%w: density varies by tensor, which needs TIES's per-tensor trim (trim_scope: tensor, mergekit's)", ErrOptions)
	}
	m.popts = make([]*Options, len(m.plan))
	for k := range m.plan {
		p := &m.plan[k]
		names := []string{p.Out, layers.Alias[p.Out]}
		o, err := m.opt.forTensor(names, layers.T(p.Out), len(m.in.Models), m.in.Base != nil)
		if err != nil {
			return fmt.Errorf("tensor %q: %w", p.Out, err)
		}
		m.popts[k] = o
	}
	return nil
}

// settingVaries reports whether parameter name has a non-scalar setting.
func settingVaries(ts *TensorSettings, name string) bool {
	if _, ok := ts.Global[name]; ok {
		return true
	}
	for _, pm := range ts.PerModel {
		if _, ok := pm[name]; ok {
			return true
		}
	}
	return false
}
