package merge

import "fmt"

// computeMergekit merges one tensor with a method of methods_mergekit.go
// (base is nil without a base model).
func computeMergekit[T Float](o *Options, p *TensorPlan, dst, base []T, xs [][]T) error {
	spec, ok := mergekitMethods[o.Method]
	if !ok {
		return fmt.Errorf("%w: method %q", ErrOptions, o.Method)
	}
	mp := &o.Mergekit
	keys := func() []uint64 {
		k := make([]uint64, len(xs))
		for i := range k {
			k[i] = StreamKey(o.Seed, p.Out, i)
		}
		return k
	}
	gp := func() GTAParams {
		return GTAParams{Weights: o.Weights, Densities: o.Densities, Gammas: mp.Gammas, Epsilons: mp.Epsilons,
			Shape: p.Shape, Lambda: o.lambda(), Consensus: spec.consensus,
			Rescale: boolOr(mp.Rescale, spec.defRescl), Normalize: boolOr(mp.Normalize, spec.defNormalize)}
	}
	switch o.Method {
	case DARELinear:
		g := gp()
		g.Keys = keys()
		DARELinearTo(dst, base, xs, g)
	case Breadcrumbs, BreadcrumbsTIES:
		BreadcrumbsTo(dst, base, xs, gp())
	case Della, DellaLinear:
		g := gp()
		g.Keys = keys()
		DellaTo(dst, base, xs, g)
	case ModelStock:
		ModelStockTo(dst, base, xs, p.Shape, mp.FilterWise)
	case NuSlerp:
		NuSlerpTo(dst, base, xs, NuSlerpParams{Weights: o.Weights, Shape: p.Shape,
			Flatten: boolOr(mp.NuSlerpFlatten, true), RowWise: mp.NuSlerpRowWise})
	case MultiSlerp:
		if err := MultiSlerpTo(dst, base, xs, o.Weights, boolOr(mp.NormalizeWeights, true)); err != nil {
			return fmt.Errorf("%w: the weighted mean of the models' directions is zero (antipodal models with balancing weights)", err)
		}
	case Karcher:
		KarcherTo(dst, xs, mp.MaxIter, mp.Tol)
	case SCE:
		k := 1.0
		if mp.SelectTopK != nil {
			k = *mp.SelectTopK
		}
		SCETo(dst, base, xs, k)
	case NearSwap:
		NearSwapTo(dst, base, xs[0], *o.T)
	case ArceeFusion:
		ArceeFusionTo(dst, base, xs[0], p.Shape)
	default:
		return fmt.Errorf("%w: method %q has no kernel", ErrOptions, o.Method)
	}
	return nil
}
