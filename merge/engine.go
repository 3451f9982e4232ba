package merge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/onnxpost/onnxpost/internal/safe"
	"github.com/onnxpost/onnxpost/internal/selection"
	"github.com/onnxpost/onnxpost/onnxio"
)

// ErrIncompatible reports input models that cannot be merged: different
// architectures, dtypes, integer tensors or Fisher files that do not fit.
var ErrIncompatible = errors.New("merge: incompatible models")

// Inputs are the models of a merge.
type Inputs struct {
	// Base is the pre-trained model deltas are taken from (task
	// arithmetic, TIES, DARE; optional first end of SLERP); nil otherwise.
	Base *onnxio.Model
	// Models are the models merged, in order (weights and densities follow
	// this order).
	Models []*onnxio.Model
	// Fishers are the models' diagonal Fisher files (Fisher merging only):
	// models whose initializers are named and shaped like the
	// corresponding model's parameters.
	Fishers []*onnxio.Model
	// Labels name the inputs in messages (e.g. their paths): Base's
	// label first when there is a base, then the models'. Optional.
	Labels []string
}

// TensorPlan is one merged tensor.
type TensorPlan struct {
	// Out is the tensor's name in the output (the template's name).
	Out string `json:"out"`
	// Base is the base model's name for it ("" without a base).
	Base string `json:"base,omitempty"`
	// Models are its names in each model.
	Models []string `json:"models"`
	// Fishers are the names of its Fisher tensors (Fisher merging).
	Fishers []string `json:"fishers,omitempty"`
	// DType and Shape are the tensor's.
	DType onnxio.DType `json:"-"`
	Shape []int64      `json:"shape"`
}

// Merger merges models tensor by tensor while the output is written, so
// that at most (models + 1) tensors of one name per worker are in memory.
// Create it with New, then Save (streaming) or Model (in memory). A Merger
// holds no context: each call that works takes its own.
type Merger struct {
	opt      Options
	in       Inputs
	template *onnxio.Model
	plan     []TensorPlan
	index    map[string]int
	// thresholds[i] is model i's global trim threshold (TIES, global scope)
	thresholds []float64
	// coeffs are the Fisher coefficients (weights, normalized if asked)
	coeffs []float64
	total  int64 // elements to merge
	done   atomic.Int64

	// popts are the options of each plan entry when parameters vary by
	// tensor (Options.Tensor), else nil
	popts []*Options

	// views read each input model's external data through memory maps
	views map[*onnxio.Model]*onnxio.Mapped
	// bufs recycles output buffers once Save has written them
	bufs bufPool
}

// Progress reports the selection passes of New: it is called with a stage
// name ("trim pass N"), the elements processed so far and the total, possibly
// from several goroutines at once. Merger.Done gives the progress of the
// merge itself.
type Progress func(stage string, done, total int64)

// New checks that the inputs can be merged with opt and prepares the merge:
// every model is paired with the template (the base, or the first model
// without a base) by onnxio.Match — structurally, not by name; integer and
// other non-float tensors must be equal in every model; floating-point
// initializers selected by opt.Include/Exclude are merged. For TIES with a
// global trim scope New makes the selection passes over all merged tensors
// (a radix selection, constant memory) to find each model's threshold; for
// Fisher merging with normalization it computes ‖Fᵢ‖. Those passes stop
// with ctx's error when ctx is cancelled.
//
// Weights held in Constant nodes are not merged: fold them first
// (onnxio.Model.FoldConstantWeights). The input models are not modified.
func New(ctx context.Context, in Inputs, opt Options, progress Progress) (*Merger, error) {
	if err := opt.Validate(len(in.Models), in.Base != nil); err != nil {
		return nil, err
	}
	if opt.Method == Fisher {
		if len(in.Fishers) != len(in.Models) {
			return nil, fmt.Errorf("%w: fisher merging needs one Fisher file per model (Inputs.Fishers): got %d for %d models", ErrOptions, len(in.Fishers), len(in.Models))
		}
	} else if len(in.Fishers) > 0 {
		return nil, fmt.Errorf("%w: Fisher files given to method %s", ErrOptions, opt.Method)
	}
	m := &Merger{opt: opt, in: in, index: map[string]int{}}
	label := func(i int) string { // i = -1: base
		k := i
		if in.Base != nil {
			k++
		}
		if k >= 0 && k < len(in.Labels) {
			return in.Labels[k]
		}
		if i < 0 {
			return "the base model"
		}
		return fmt.Sprintf("model %d", i+1)
	}
	m.template = in.Base
	tlabel := label(-1)
	if m.template == nil {
		m.template = in.Models[0]
		tlabel = label(0)
	}
	// pair every model with the template
	names := make([]map[string]string, len(in.Models))
	for i, mod := range in.Models {
		if mod == m.template {
			names[i] = nil // identity
			continue
		}
		pairs, err := onnxio.Match(m.template, mod)
		if err != nil {
			return nil, fmt.Errorf("%w: %s does not match the architecture of %s: %w", ErrIncompatible, label(i), tlabel, err)
		}
		names[i] = map[string]string{}
		for _, p := range pairs {
			names[i][p.A] = p.B
		}
	}
	nameIn := func(i int, n string) string {
		if names[i] == nil {
			return n
		}
		return names[i][n]
	}
	for _, n := range m.template.Initializers() {
		dt, shape, err := m.template.InitializerInfo(n)
		if err != nil {
			return nil, err
		}
		if !dt.IsFloat() {
			if err := m.checkEqual(n, nameIn, label, tlabel); err != nil {
				return nil, err
			}
			continue
		}
		if !opt.Selected(n) {
			continue
		}
		p := TensorPlan{Out: n, DType: dt, Shape: shape}
		if in.Base != nil {
			p.Base = n
		}
		for i := range in.Models {
			p.Models = append(p.Models, nameIn(i, n))
		}
		if opt.Method == Fisher {
			if m.fisherLacks(n, nameIn) && m.checkEqual(n, nameIn, label, tlabel) == nil {
				// a tensor equal in every model (a folded constant the
				// Fisher files do not describe) merges to itself
				continue
			}
			for i, f := range in.Fishers {
				mn := p.Models[i]
				fdt, fshape, err := f.InitializerInfo(mn)
				if err != nil {
					return nil, fmt.Errorf("%w: the Fisher file of %s has no tensor %q", ErrIncompatible, label(i), mn)
				}
				if !fdt.IsFloat() || !slices.Equal(fshape, shape) {
					return nil, fmt.Errorf("%w: Fisher tensor %q of %s is %v %v, want a float tensor of shape %v", ErrIncompatible, mn, label(i), fdt, fshape, shape)
				}
				p.Fishers = append(p.Fishers, mn)
			}
		}
		n, _ := onnxio.NumElements(shape)
		m.total += n
		m.index[p.Out] = len(m.plan)
		m.plan = append(m.plan, p)
	}
	if len(m.plan) == 0 {
		return nil, fmt.Errorf("%w: nothing to transform: no floating-point tensor selected to merge", ErrOptions)
	}
	if err := m.resolveTensorSettings(label); err != nil {
		return nil, err
	}
	m.openViews()
	var err error
	switch {
	case opt.Method == TIES && opt.TrimScope == TrimGlobal:
		err = m.globalThresholds(ctx, progress)
	case opt.Method == Fisher:
		err = m.fisherCoeffs(ctx)
	}
	if err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// fisherLacks reports whether a Fisher file lacks the template's tensor n
// (under its model's name for it).
func (m *Merger) fisherLacks(n string, nameIn func(int, string) string) bool {
	for i, f := range m.in.Fishers {
		if _, _, err := f.InitializerInfo(nameIn(i, n)); err != nil {
			return true
		}
	}
	return false
}

// checkEqual verifies that a tensor is equal in every model (non-float
// tensors must be; a float tensor missing from the Fisher files may be).
func (m *Merger) checkEqual(n string, nameIn func(int, string) string, label func(int) string, tlabel string) error {
	want, err := m.template.Initializer(n)
	if err != nil {
		return err
	}
	for i, mod := range m.in.Models {
		if mod == m.template {
			continue
		}
		got, err := mod.Initializer(nameIn(i, n))
		if err != nil {
			return err
		}
		same := bytes.Equal(got.Bytes(), want.Bytes()) && len(got.Strings) == len(want.Strings)
		for k := 0; same && k < len(got.Strings); k++ {
			same = bytes.Equal(got.Strings[k], want.Strings[k])
		}
		if !same {
			return fmt.Errorf("%w: %v tensor %q (shapes, indices...) differs between %s and %s (%q); only floating-point tensors are merged, the others must be equal",
				ErrIncompatible, want.DType, n, tlabel, label(i), nameIn(i, n))
		}
	}
	return nil
}

// Plan returns the merged tensors.
func (m *Merger) Plan() []TensorPlan { return m.plan }

// Thresholds returns each model's global trim threshold on |τ| (TIES with
// global scope), or nil.
func (m *Merger) Thresholds() []float64 { return m.thresholds }

// Elements returns the number of elements merged.
func (m *Merger) Elements() int64 { return m.total }

// Template returns the model whose graph the output takes: the base, or
// the first model without one.
func (m *Merger) Template() *onnxio.Model { return m.template }

// openViews opens a memory-mapped view of every input model (base, models,
// Fisher files), closed by Close or, failing that, when the Merger is
// garbage.
func (m *Merger) openViews() {
	m.views = map[*onnxio.Model]*onnxio.Mapped{}
	var list []*onnxio.Mapped
	add := func(mod *onnxio.Model) {
		if mod != nil && m.views[mod] == nil {
			v := mod.Mapped()
			m.views[mod] = v
			list = append(list, v)
		}
	}
	add(m.in.Base)
	for _, mod := range m.in.Models {
		add(mod)
	}
	for _, f := range m.in.Fishers {
		add(f)
	}
	runtime.AddCleanup(m, func(vs []*onnxio.Mapped) {
		for _, v := range vs {
			v.Close()
		}
	}, list)
}

// Close releases the memory maps of the inputs. Call it once the merge is
// saved; the Merger must not be used afterwards.
func (m *Merger) Close() error {
	var first error
	for _, v := range m.views {
		if err := v.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// release drops the resident pages of tensors read by group (a no-op for
// tensors that are not memory-mapped).
func (m *Merger) release(mod *onnxio.Model, ts ...*onnxio.Tensor) {
	v := m.views[mod]
	if v == nil {
		return
	}
	for _, t := range ts {
		v.Release(t)
	}
}

// releaseGroup releases what group returned.
func (m *Merger) releaseGroup(base *onnxio.Tensor, xs []*onnxio.Tensor) {
	if m.in.Base != nil {
		m.release(m.in.Base, base)
	}
	for i, mod := range m.in.Models {
		if i < len(xs) {
			m.release(mod, xs[i])
		}
	}
}

// call runs f with memory faults turned into panics (SetPanicOnFault) and
// returns its error; a panic becomes a *safe.PanicError, except a fault
// inside one of the input maps (a data file truncated while the merge
// runs), which becomes the view's ErrFormat error.
func (m *Merger) call(op string, f func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer m.recoverFault(op, &err)
	return f()
}

// recoverFault is safe.Recover that first asks the input views whether
// the panic is a fault in their maps. Call it deferred, directly.
func (m *Merger) recoverFault(op string, errp *error) {
	r := recover()
	if r == nil {
		return
	}
	for _, v := range m.views {
		if e := v.Fault(r); e != nil {
			*errp = e
			return
		}
	}
	*errp = safe.FromPanic(op, r)
}

// group reads one plan entry's tensors: the base's (nil without base) and
// each model's; the template's own tensor t is reused when given.
func (m *Merger) group(p *TensorPlan, t *onnxio.Tensor) (base *onnxio.Tensor, xs []*onnxio.Tensor, err error) {
	return m.groupPages(p, t, true)
}

// groupPages is group; populate maps every page of the memory-mapped
// tensors at once (for a pass that reads every byte; a sampling pass leaves
// it false and faults in the pages it touches).
func (m *Merger) groupPages(p *TensorPlan, t *onnxio.Tensor, populate bool) (base *onnxio.Tensor, xs []*onnxio.Tensor, err error) {
	get := func(mod *onnxio.Model, name string) (*onnxio.Tensor, error) {
		if v := m.views[mod]; v != nil {
			t, err := v.Initializer(name)
			if err == nil && populate {
				v.Populate(t) // the pass reads every byte of it
			}
			return t, err
		}
		if mod == m.template && t != nil {
			return t, nil
		}
		return mod.Initializer(name)
	}
	if m.in.Base != nil {
		if base, err = get(m.in.Base, p.Base); err != nil {
			return nil, nil, err
		}
	}
	xs = make([]*onnxio.Tensor, len(m.in.Models))
	for i, mod := range m.in.Models {
		if xs[i], err = get(mod, p.Models[i]); err != nil {
			return nil, nil, err
		}
	}
	return base, xs, nil
}

// forEach runs fn over the plan with a worker pool, stopping at the first
// error, at a worker's panic (returned as a *safe.PanicError) or when ctx
// is cancelled.
func (m *Merger) forEach(ctx context.Context, fn func(p *TensorPlan) error) error {
	workers := min(runtime.GOMAXPROCS(0), len(m.plan))
	jobs := make(chan int)
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
		stop  = make(chan struct{})
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				p := &m.plan[i]
				if err := m.call("merge worker ("+p.Out+")", func() error { return fn(p) }); err != nil {
					once.Do(func() { first = err; close(stop) })
				}
			}
		}()
	}
loop:
	for i := range m.plan {
		if err := ctx.Err(); err != nil {
			once.Do(func() { first = err; close(stop) })
			break
		}
		select {
		case jobs <- i:
		case <-stop:
			break loop
		case <-ctx.Done():
			once.Do(func() { first = ctx.Err(); close(stop) })
			break loop
		}
	}
	close(jobs)
	wg.Wait()
	return first
}

// radixThresholds sets m.thresholds[i], for the models i of which, to the
// k-th largest |τ| over all merged tensors with k = TrimCount(density,
// total) — by radix selection passes, one tensor name at a time.
func (m *Merger) radixThresholds(ctx context.Context, progress Progress, which []int) error {
	nm := len(m.in.Models)
	sels := make([]*Selector, nm)
	for _, i := range which {
		sels[i] = NewSelector(TrimCount(m.opt.Densities[i], m.total))
	}
	for pass := 0; ; pass++ {
		var seen atomic.Int64
		active := false
		for _, s := range sels {
			active = active || s != nil && !s.Done()
		}
		if !active {
			break
		}
		// one accumulating pass per model; each tensor's pass is folded
		// into it as soon as the tensor is done (constant memory)
		var mu sync.Mutex
		acc := make([]*Pass, nm)
		for i, s := range sels {
			if s != nil && !s.Done() {
				acc[i] = s.NewPass()
			}
		}
		pool := sync.Pool{New: func() any { return make([]*Pass, nm) }}
		err := m.forEach(ctx, func(p *TensorPlan) error {
			base, xs, err := m.group(p, nil)
			defer m.releaseGroup(base, xs)
			if err != nil {
				return err
			}
			local := pool.Get().([]*Pass)
			defer pool.Put(local)
			for i, s := range sels {
				if s == nil || s.Done() {
					local[i] = nil
				} else {
					local[i] = s.ResetPass(local[i])
				}
			}
			if err := absDeltas(base, xs, local); err != nil {
				return fmt.Errorf("tensor %q: %w", p.Out, err)
			}
			mu.Lock()
			for i, l := range local {
				if l != nil {
					acc[i].Merge(l)
				}
			}
			mu.Unlock()
			if progress != nil {
				n, _ := onnxio.NumElements(p.Shape)
				progress(fmt.Sprintf("trim pass %d", pass+2), seen.Add(n), m.total)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for i, s := range sels {
			if s != nil && !s.Done() {
				if err := s.EndPass(acc[i]); err != nil {
					return err
				}
			}
		}
	}
	if m.thresholds == nil {
		m.thresholds = make([]float64, nm)
	}
	for _, i := range which {
		m.thresholds[i] = sels[i].Threshold()
	}
	return nil
}

// absDeltas feeds |xᵢ − base| to passes[i] (nil passes are skipped).
func absDeltas(base *onnxio.Tensor, xs []*onnxio.Tensor, passes []*Pass) error {
	if base.DType == onnxio.Double {
		b, err := view64(base)
		if err != nil {
			return err
		}
		for i, x := range xs {
			if passes[i] == nil {
				continue
			}
			v, err := view64(x)
			if err != nil {
				return err
			}
			feedAbs(passes[i], b, v)
		}
		return nil
	}
	b, err := view32(base)
	if err != nil {
		return err
	}
	for i, x := range xs {
		if passes[i] == nil {
			continue
		}
		v, err := view32(x)
		if err != nil {
			return err
		}
		feedAbs(passes[i], b, v)
	}
	return nil
}

// feedAbs feeds |x − base| elementwise; equal values give 0 even when
// infinite (a −Inf mask in both), where the subtraction would give NaN.
func feedAbs[T Float](p *Pass, base, x []T) {
	for j := range base {
		d := 0.0
		if x[j] != base[j] {
			d = math.Abs(float64(x[j]) - float64(base[j]))
		}
		p.Add(d)
	}
}

// tensorSample is the most values tensorThreshold samples (every stride-th
// element) to bracket the threshold.
const tensorSample = 1 << 16

// tensorThreshold returns the k-th largest |x − base| of one tensor (k =
// TrimCount(density, n)), exactly: tensorThresholds for one model.
func tensorThreshold[T Float](base, x []T, density float64) (float64, error) {
	thr, err := tensorThresholds(base, [][]T{x}, []float64{density})
	if err != nil {
		return 0, err
	}
	return thr[0], nil
}

// tensorThresholds returns, for each model i, the kᵢ-th largest |xᵢ −
// base| of one tensor (kᵢ = TrimCount(densities[i], n)), exactly. As for
// the global trim (selectfast.go), a sample of the order-preserving
// float32 keys (every stride-th element) gives each model a bracket, one
// pass over the tensor (bracketScanAll: block by block, every model in
// turn, so the base is read once) counts the values above it and collects
// the float64 values inside it, and the threshold is selected among
// those; when a bracket misses, radixTensorThreshold decides that model's.
func tensorThresholds[T Float](base []T, xs [][]T, densities []float64) ([]float64, error) {
	n := len(base)
	thr := make([]float64, len(xs))
	if n == 0 {
		return thr, nil
	}
	stride := max(1, n/tensorSample)
	brs := make([]*bracket, len(xs))
	ks := make([]int64, len(xs))
	sample := make([]uint32, 0, n/stride+1)
	xs = slices.Clone(xs)
	for i, x := range xs {
		x = x[:n]
		xs[i] = x
		ks[i] = TrimCount(densities[i], int64(n))
		sample = sample[:0]
		for j := 0; j < n; j += stride {
			sample = append(sample, trimKey(absDelta(x[j], base[j])))
		}
		brs[i] = newBracket(sample, ks[i], int64(n), tensorSigmas)
	}
	bracketScanAll(brs, base, xs)
	for i, br := range brs {
		k, above := ks[i], br.above.Load()
		if br.overflow || above >= k || k > above+int64(len(br.vals)) {
			if testBracketMiss != nil {
				testBracketMiss(1)
			}
			thr[i] = radixTensorThreshold(base, xs[i], k)
			continue
		}
		thr[i] = math.Float64frombits(selection.Value(br.vals, len(br.vals)-int(k-above)))
	}
	return thr, nil
}

// radixTensorThreshold returns the k-th largest |x − base| of one tensor,
// exactly: a two-level radix selection on the order-preserving float32
// keys of the values (trimKey) finds the key of the k-th largest and how
// many values have a larger key; the float64 values whose key equals it
// are then selected exactly. The data are read once to compute the keys;
// the selection runs over the keys (4 bytes per element).
func radixTensorThreshold[T Float](base, x []T, k int64) float64 {
	n := len(base)
	x = x[:n]
	keys := make([]uint32, n)
	hist := make([]int64, 1<<16)
	for j, b := range base {
		key := trimKey(absDelta(x[j], b))
		keys[j] = key
		hist[key>>16]++
	}
	pick := func() (bin uint32, above int64) { // the bin holding rank k, and the count above it
		for b := len(hist) - 1; b >= 0; b-- {
			if above+hist[b] >= k {
				return uint32(b), above
			}
			above += hist[b]
		}
		panic("merge: radix selection lost track") // the counts add up to n ≥ k
	}
	hi, above := pick()
	clear(hist)
	for _, key := range keys {
		if key>>16 == hi {
			hist[key&0xFFFF]++
		}
	}
	k -= above
	lo, above2 := pick()
	k -= above2
	want := hi<<16 | lo
	var vals []uint64
	for j, key := range keys {
		if key == want {
			vals = append(vals, math.Float64bits(absDelta(x[j], base[j])))
		}
	}
	return math.Float64frombits(selection.Value(vals, len(vals)-int(k)))
}

// fisherCoeffs sets the Fisher coefficients: the weights, divided by
// ‖Fᵢ‖₂ over the merged tensors when normalizing.
func (m *Merger) fisherCoeffs(ctx context.Context) error {
	m.coeffs = append([]float64(nil), m.opt.Weights...)
	if !m.opt.FisherNormalize {
		return nil
	}
	sq := make([]float64, len(m.in.Fishers))
	var mu sync.Mutex
	err := m.forEach(ctx, func(p *TensorPlan) error {
		local := make([]float64, len(sq))
		for i, f := range m.in.Fishers {
			t, err := m.views[f].Initializer(p.Fishers[i])
			if err != nil {
				return err
			}
			defer m.release(f, t)
			v, err := view64(t)
			if err != nil {
				return err
			}
			for _, x := range v {
				local[i] += x * x
			}
		}
		mu.Lock()
		for i := range sq {
			sq[i] += local[i]
		}
		mu.Unlock()
		return nil
	})
	if err != nil {
		return err
	}
	for i, s := range sq {
		if s == 0 || math.IsNaN(s) || math.IsInf(s, 0) {
			return fmt.Errorf("%w: the Fisher of model %d has norm %v; cannot normalize", ErrIncompatible, i+1, math.Sqrt(s))
		}
		m.coeffs[i] /= math.Sqrt(s)
	}
	return nil
}
