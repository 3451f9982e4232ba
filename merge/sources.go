package merge

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"

	"github.com/onnxpost/onnxpost/internal/display"
	"github.com/onnxpost/onnxpost/internal/filehash"
	"github.com/onnxpost/onnxpost/onnxio"
)

// Sources hashes input files for provenance (SetProvenance): one Source
// per path, with role ("base", "model", "fisher", ...). models, when not
// nil, are the loaded models of paths: their external data files are
// hashed too.
func Sources(role string, paths []string, models []*onnxio.Model) ([]Source, error) {
	// The files are hashed concurrently (one worker per CPU): hashing
	// gigabytes of external data is otherwise a sequential pass as long as
	// the merge itself.
	out := make([]Source, len(paths))
	type job struct {
		src  int
		loc  string // "" for the model file itself
		path string
	}
	var jobs []job
	for i, p := range paths {
		out[i] = Source{Role: role, Path: p}
		jobs = append(jobs, job{i, "", p})
		if models != nil {
			locs, files, err := models[i].ExternalFiles()
			if err != nil {
				return nil, err
			}
			for k, f := range files {
				jobs = append(jobs, job{i, locs[k], f})
			}
		}
	}
	sums := make([]string, len(jobs))
	errs := make([]error, len(jobs))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(jobs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range next {
				sums[k], errs[k] = FileSHA256(jobs[k].path)
			}
		}()
	}
	for k := range jobs {
		next <- k
	}
	close(next)
	wg.Wait()
	for k, j := range jobs {
		if errs[k] != nil {
			return nil, errs[k]
		}
		if j.loc == "" {
			out[j.src].SHA256 = sums[k]
			continue
		}
		if out[j.src].Data == nil {
			out[j.src].Data = map[string]string{}
		}
		out[j.src].Data[j.loc] = sums[k]
	}
	return out, nil
}

// LoadModels loads model files, naming the file in errors.
func LoadModels(paths []string) ([]*onnxio.Model, error) {
	out := make([]*onnxio.Model, len(paths))
	for i, p := range paths {
		m, err := onnxio.Load(p)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("model %s does not exist", p)
			}
			return nil, fmt.Errorf("loading %s: %w", p, err)
		}
		out[i] = m
	}
	return out, nil
}

// Prepare readies loaded models for merging, which reads main-graph
// initializers: weights held in Constant nodes are folded into initializers,
// sparse initializers made dense and initializers of If/Loop/Scan
// subgraphs moved to the main graph (onnxio.Model.HoistWeight), in every
// model alike, so the structural pairing still holds. Float weights that
// cannot be moved (Constant nodes inside subgraphs, a name used twice) are
// refused by name, since merging would silently keep the template's values
// for them. paths name the models in errors.
func Prepare(models []*onnxio.Model, paths []string) error {
	for i, m := range models {
		ws, err := m.AllWeights()
		if err != nil {
			return err
		}
		var held []string
		for _, w := range ws {
			if w.Stored == "" || !w.DType.IsFloat() {
				continue
			}
			if err := m.HoistWeight(w); err != nil {
				held = append(held, fmt.Sprintf("%s (%s)", display.Name(w.Name), display.Name(w.Stored)))
			}
		}
		if len(held) > 0 {
			return fmt.Errorf("%s holds weights in subgraphs, which merge does not merge (it would keep one model's values): %s", paths[i], strings.Join(held, ", "))
		}
		if _, err := m.FoldConstantWeights(); err != nil {
			return fmt.Errorf("%s: %w", paths[i], err)
		}
		if _, err := m.DensifySparseInitializers(); err != nil {
			return fmt.Errorf("%s: %w", paths[i], err)
		}
	}
	return nil
}

// LoadInputs loads the base model (base "" for none) and the models to
// merge, readies them (Prepare) and hashes their files for provenance
// (Sources, roles "base" and "model"): what the CLI's merge does with its
// arguments. Labels are the paths.
func LoadInputs(base string, models []string) (Inputs, []Source, error) {
	in, sources, err := OpenInputs(base, models)
	if err != nil {
		return in, nil, err
	}
	srcs, err := sources()
	if err != nil {
		return in, nil, err
	}
	return in, srcs, nil
}

// OpenInputs is LoadInputs without waiting for the digests: the files are
// hashed in the background while the caller goes on (the merge itself reads
// the same pages), and sources waits for them and returns the Sources.
func OpenInputs(base string, models []string) (in Inputs, sources func() ([]Source, error), err error) {
	var bs []*onnxio.Model
	if base != "" {
		if bs, err = LoadModels([]string{base}); err != nil {
			return in, nil, err
		}
		if err := Prepare(bs, []string{base}); err != nil {
			return in, nil, err
		}
		in.Base = bs[0]
		in.Labels = append(in.Labels, base)
	}
	ms, err := LoadModels(models)
	if err != nil {
		return in, nil, err
	}
	if err := Prepare(ms, models); err != nil {
		return in, nil, err
	}
	in.Models = ms
	in.Labels = append(in.Labels, models...)
	paths, all := models, ms
	if base != "" {
		paths, all = append([]string{base}, models...), append(bs, ms...)
	}
	var files []string
	for i, m := range all {
		files = append(files, paths[i])
		if _, ext, err := m.ExternalFiles(); err == nil {
			files = append(files, ext...)
		}
	}
	filehash.Start(files...)
	return in, func() ([]Source, error) {
		var srcs []Source
		if base != "" {
			var err error
			if srcs, err = Sources("base", []string{base}, bs); err != nil {
				return nil, err
			}
		}
		mss, err := Sources("model", models, ms)
		if err != nil {
			return nil, err
		}
		return append(srcs, mss...), nil
	}, nil
}

// Merged returns the merged model in memory with the merge's provenance
// (SetProvenance with the validated options and sources) in its metadata:
// what the CLI's merge writes when it evaluates the result.
func (m *Merger) Merged(ctx context.Context, sources []Source) (*onnxio.Model, error) {
	out := m.Output()
	if err := SetProvenance(out, &m.opt, sources); err != nil {
		return nil, err
	}
	return m.Model(ctx, out)
}
