package evalharness

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/onnxpost/onnxpost/onnxio"
)

// valueSize is what one value of a run holds: its elements, its bytes as
// the session returns them, and its first dimension (-1 for a scalar).
type valueSize struct {
	elems, bytes, dim0 int64
}

// sizeOf describes array a.
func sizeOf(a *Array) valueSize {
	d0 := int64(-1)
	if len(a.Shape) > 0 {
		d0 = a.Shape[0]
	}
	return valueSize{elems: a.NumElements(), bytes: int64(len(a.Data)), dim0: d0}
}

// fetchGroups partitions values (in the order given: graph order) into
// consecutive groups whose runs hold at most budget bytes each: the sum of
// their sizes plus the float64 buffer of the largest piece (piece returns
// a value's elements per piece). A value whose size is unknown, or that
// alone exceeds budget, is a group of its own.
func fetchGroups(values []string, sizes map[string]valueSize, piece func(string, valueSize) int64, budget int64) [][]string {
	var groups [][]string
	var cur []string
	var held, largest int64
	flush := func() {
		if len(cur) > 0 {
			groups = append(groups, cur)
		}
		cur, held, largest = nil, 0, 0
	}
	for _, v := range values {
		s, ok := sizes[v]
		if !ok {
			flush()
			groups = append(groups, []string{v})
			continue
		}
		p := piece(v, s)
		if len(cur) > 0 && held+s.bytes+8*max(largest, p) > budget {
			flush()
		}
		cur = append(cur, v)
		held += s.bytes
		largest = max(largest, p)
	}
	flush()
	return groups
}

// graphOrder lists values in the order m's nodes produce them; values no
// node produces (folded into initializers) follow, sorted.
func graphOrder(m *onnxio.Model, values []string) []string {
	want := map[string]bool{}
	for _, v := range values {
		want[v] = true
	}
	var out []string
	for _, n := range m.Nodes() {
		for _, o := range n.Outputs {
			if want[o] {
				out = append(out, o)
				delete(want, o)
			}
		}
	}
	rest := make([]string, 0, len(want))
	for v := range want {
		rest = append(rest, v)
	}
	sort.Strings(rest)
	return append(out, rest...)
}

// withOutputs returns a model deriving from m that outputs values only
// (with m's value infos where it has them), less the nodes they do not
// need.
func withOutputs(m *onnxio.Model, values []string) *onnxio.Model {
	d := m.Derive()
	vis := make([]onnxio.ValueInfo, len(values))
	for i, v := range values {
		vi, ok := d.ValueInfo(v)
		if !ok {
			vi = onnxio.ValueInfo{Name: v}
		}
		vis[i] = vi
	}
	d.SetOutputs(vis)
	d.EliminateDeadCode()
	return d
}

// optimizedForGroups returns the graph ONNX Runtime runs for model c (its
// graph optimizations applied, saved by the runtime and read back, every
// node named), and the sizes of values (c's extra outputs) in a run of
// the first n samples of ds, read from the runtime's profile of one run
// of that graph with only c's own outputs: a run that holds no more than
// the model normally does. Sessions on the returned graph with
// optimizations off and any subset of values as outputs compute what a
// session on c computes, bit for bit (fusions would otherwise differ with
// the outputs each group exposes). Values whose size the profile does not
// give are missing from the map.
func optimizedForGroups(c *onnxio.Model, values []string, ds *Dataset, n int64, opt SessionOptions) (*onnxio.Model, map[string]valueSize, error) {
	dir, err := os.MkdirTemp("", "onnxpost-capture-")
	if err != nil {
		return nil, nil, err
	}
	defer os.RemoveAll(dir)
	b, err := c.Bytes()
	if err != nil {
		return nil, nil, err
	}
	o := opt
	o.optimizedPath = filepath.Join(dir, "optimized.onnx")
	// Neither session's arithmetic matters, only its graph and shapes: one
	// thread (no pool whose threads' malloc arenas would outlive it), no
	// weight packing, no memory arena.
	o.NoPrepack, o.Threads = true, 1
	s, err := newSession(b, "", values, o)
	if err != nil {
		return nil, nil, err
	}
	s.Close()
	ob, err := os.ReadFile(o.optimizedPath)
	if err != nil {
		return nil, nil, fmt.Errorf("evalharness: reading ONNX Runtime's optimized model: %w", err)
	}
	om, err := onnxio.LoadBytes(ob, "")
	if err != nil {
		return nil, nil, fmt.Errorf("evalharness: reading ONNX Runtime's optimized model: %w", err)
	}
	om.EnsureNodeNames() // the profile names nodes
	extra := map[string]bool{}
	for _, v := range values {
		extra[v] = true
	}
	var own []string
	for _, v := range om.Outputs() {
		if !extra[v.Name] {
			own = append(own, v.Name)
		}
	}
	if len(own) == 0 { // (every output is an extra one: keep them)
		own = values
	}
	pm := om.Derive()
	vis := make([]onnxio.ValueInfo, len(own))
	for i, v := range own {
		vis[i], _ = pm.ValueInfo(v)
		vis[i].Name = v
	}
	pm.SetOutputs(vis)
	pb, err := pm.Bytes()
	if err != nil {
		return nil, nil, err
	}
	p := opt
	p.DisableOptimizations = true
	p.profilePrefix = filepath.Join(dir, "profile")
	p.noArena, p.Threads = true, 1
	ps, err := newSession(pb, "", nil, p)
	if err != nil {
		return nil, nil, err
	}
	if err := ds.Check(ps.Inputs()); err != nil {
		ps.Close()
		return nil, nil, err
	}
	_, err = ps.Run(feed(ps, ds, 0, n))
	if cerr := ps.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, nil, err
	}
	files, _ := filepath.Glob(p.profilePrefix + "*.json")
	if len(files) != 1 {
		return nil, nil, fmt.Errorf("evalharness: ONNX Runtime wrote %d profiles, want 1", len(files))
	}
	releaseFreed() // (what the two sessions freed: capture's sessions follow)
	sizes, err := profileSizes(files[0], om, extra)
	if err != nil {
		return nil, nil, err
	}
	return om, sizes, nil
}

// profileSizes reads the sizes of the wanted values that nodes of m
// produce from an ONNX Runtime profile (JSON trace events; a node's
// "<name>_kernel_time" event lists its outputs' types and shapes).
func profileSizes(path string, m *onnxio.Model, want map[string]bool) (map[string]valueSize, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var events []struct {
		Cat  string `json:"cat"`
		Name string `json:"name"`
		Args struct {
			Outputs []map[string][]int64 `json:"output_type_shape"`
		} `json:"args"`
	}
	if err := json.Unmarshal(b, &events); err != nil {
		return nil, fmt.Errorf("evalharness: reading ONNX Runtime's profile: %w", err)
	}
	shapes := map[string][]map[string][]int64{}
	for _, e := range events {
		if name, ok := strings.CutSuffix(e.Name, "_kernel_time"); ok && e.Cat == "Node" {
			shapes[name] = e.Args.Outputs
		}
	}
	sizes := map[string]valueSize{}
	for _, n := range m.Nodes() {
		outs, ok := shapes[n.Name]
		if !ok || len(outs) != len(n.Outputs) {
			continue // (an optional output left out: which is which is unsure)
		}
		for k, o := range n.Outputs {
			if !want[o] || len(outs[k]) != 1 {
				continue
			}
			for dt, dims := range outs[k] {
				w := profileTypeBytes[dt]
				if w == 0 {
					continue
				}
				s := valueSize{elems: 1, dim0: -1}
				for _, d := range dims {
					s.elems *= d
				}
				if len(dims) > 0 {
					s.dim0 = dims[0]
				}
				s.bytes = w * s.elems
				sizes[o] = s
			}
		}
	}
	return sizes, nil
}

// profileTypeBytes is the size of an element of the types ONNX Runtime's
// profile names.
var profileTypeBytes = map[string]int64{
	"float": 4, "double": 8, "float16": 2, "bfloat16": 2,
	"int8": 1, "uint8": 1, "bool": 1, "int16": 2, "uint16": 2,
	"int32": 4, "uint32": 4, "int64": 8, "uint64": 8,
}
