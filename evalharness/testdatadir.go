package evalharness

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"

	"github.com/onnxpost/onnxpost/internal/safefile"
	"github.com/onnxpost/onnxpost/onnxio"
)

var (
	setRe = regexp.MustCompile(`^test_data_set_(\d+)$`)
	pbRe  = regexp.MustCompile(`^(input|output)_(\d+)\.pb$`)
)

// loadTestDataDir reads an ONNX test-data folder: test_data_set_<k>/
// input_<i>.pb and output_<i>.pb (serialized TensorProto). The sets are
// concatenated along the first axis, in set order. Tensors are keyed by
// their TensorProto name, or "#i" (the i-th model input/output) when
// unnamed; Check resolves "#i" against the model.
//
// Each .pb file must be a regular file; all of them together hold at most
// maxBytes.
func loadTestDataDir(dir string, maxBytes int64) (*Dataset, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDataset, err)
	}
	type set struct {
		k    int
		path string
	}
	var sets []set
	for _, e := range entries {
		if m := setRe.FindStringSubmatch(e.Name()); m != nil && e.IsDir() {
			k, err := strconv.Atoi(m[1])
			if err != nil {
				continue
			}
			sets = append(sets, set{k, filepath.Join(dir, e.Name())})
		}
	}
	if len(sets) == 0 {
		return nil, fmt.Errorf("%w: %s is empty: no test_data_set_* folders", ErrDataset, dir)
	}
	sort.Slice(sets, func(i, j int) bool { return sets[i].k < sets[j].k })
	ins := map[string][]*Array{}
	outs := map[string][]*Array{}
	var inKeys, outKeys []string
	budget := maxBytes
	for si, s := range sets {
		files, err := os.ReadDir(s.path)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrDataset, err)
		}
		var setIn, setOut []string
		for _, f := range files {
			m := pbRe.FindStringSubmatch(f.Name())
			if m == nil {
				continue
			}
			idx, _ := strconv.Atoi(m[2])
			max := budget
			if max > math.MaxInt32 {
				max = math.MaxInt32 // protobuf's own limit for one message
			}
			raw, err := safefile.ReadFile(filepath.Join(s.path, f.Name()), max)
			if errors.Is(err, safefile.ErrTooLarge) {
				return nil, fmt.Errorf("%w: %s: %v: the test-data folder holds more than %d bytes (raise the limit with ONNXPOST_MAX_DATASET_BYTES)", ErrDataset, dir, err, maxBytes)
			}
			if err != nil {
				return nil, fmt.Errorf("%w: %w", ErrDataset, err)
			}
			budget -= int64(len(raw))
			name, a, err := decodeTensorProto(raw)
			if err != nil {
				return nil, fmt.Errorf("%w: %s: %v", ErrDataset, filepath.Join(s.path, f.Name()), err)
			}
			if name == "" {
				name = "#" + strconv.Itoa(idx)
			}
			if m[1] == "input" {
				ins[name] = append(ins[name], a)
				setIn = append(setIn, name)
			} else {
				outs[name] = append(outs[name], a)
				setOut = append(setOut, name)
			}
		}
		sort.Strings(setIn)
		sort.Strings(setOut)
		if si == 0 {
			inKeys, outKeys = setIn, setOut
		} else if fmt.Sprint(setIn) != fmt.Sprint(inKeys) || fmt.Sprint(setOut) != fmt.Sprint(outKeys) {
			return nil, fmt.Errorf("%w: %s: %s holds tensors %v/%v, the first set %v/%v", ErrDataset, dir, filepath.Base(s.path), setIn, setOut, inKeys, outKeys)
		}
	}
	d := &Dataset{Path: dir, Inputs: map[string]*Array{}}
	for name, parts := range ins {
		if len(parts[0].Shape) == 0 {
			// a scalar (a sample rate) is given once, fed whole to every
			// batch: every set must hold the same value
			for _, p := range parts[1:] {
				if len(p.Shape) != 0 || string(p.Data) != string(parts[0].Data) {
					return nil, fmt.Errorf("%w: %s: scalar input %q differs between the sets; a scalar has no sample axis to concatenate along", ErrDataset, dir, name)
				}
			}
			d.Inputs[name] = parts[0]
			continue
		}
		a, err := Concat(parts)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: input %q: %v", ErrDataset, dir, name, err)
		}
		d.Inputs[name] = a
	}
	if len(outs) > 0 {
		d.Outputs = map[string]*Array{}
		for name, parts := range outs {
			a, err := Concat(parts)
			if err != nil {
				return nil, fmt.Errorf("%w: %s: output %q: %v", ErrDataset, dir, name, err)
			}
			d.Outputs[name] = a
		}
	}
	if err := d.init(); err != nil {
		return nil, err
	}
	for _, name := range sortedKeys(d.Outputs) {
		if a := d.Outputs[name]; a.Shape[0] != d.N {
			return nil, fmt.Errorf("%w: %s: expected output %q has %d rows but the inputs have %d samples", ErrDataset, dir, name, a.Shape[0], d.N)
		}
	}
	return d, nil
}

func sortedKeys(m map[string]*Array) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// decodeTensorProto decodes a serialized ONNX TensorProto into its name and
// an Array.
func decodeTensorProto(raw []byte) (string, *Array, error) {
	t, err := onnxio.ParseTensor(raw)
	if err != nil {
		return "", nil, err
	}
	a, err := ArrayFromTensor(t)
	if err != nil {
		return "", nil, err
	}
	return t.Name, a, nil
}

// ArrayFromTensor views an onnxio tensor as an Array (sharing its bytes).
// Sub-byte, string and complex types are not supported.
func ArrayFromTensor(t *onnxio.Tensor) (*Array, error) {
	if ElemSize(t.DType) == 0 {
		return nil, fmt.Errorf("%w: tensor %q has unsupported dtype %v", ErrArray, t.Name, t.DType)
	}
	a := &Array{DType: t.DType, Shape: append([]int64(nil), t.Shape...), Data: t.Bytes()}
	if a.Data == nil {
		a.Data = []byte{}
	}
	if err := a.Validate(); err != nil {
		return nil, err
	}
	return a, nil
}
