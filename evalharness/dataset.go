package evalharness

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/onnxpost/onnxpost/evalharness/npz"
	"github.com/onnxpost/onnxpost/onnxio"
)

// LabelsName is the .npz array holding integer class labels.
const LabelsName = "labels"

// ErrDataset reports a dataset that does not fit the model or is malformed.
var ErrDataset = errors.New("evalharness: bad dataset")

// Dataset holds the samples of an evaluation: one array per model input,
// all with the same first (sample) axis, optional integer labels and, for
// ONNX test-data folders, the expected outputs.
type Dataset struct {
	// Path is the file or folder the dataset came from ("" when built in
	// memory).
	Path string
	// Inputs maps input names to arrays whose first axis is the sample
	// axis.
	Inputs map[string]*Array
	// Labels holds one class id per sample, or nil.
	Labels []int64
	// Outputs holds expected outputs (ONNX test-data folders), keyed by
	// output name, or by "#i" for the i-th model output when the files do
	// not name them; nil when absent.
	Outputs map[string]*Array
	// N is the number of samples.
	N int64
	// Extra lists arrays of the file that are neither inputs nor labels
	// (they are ignored).
	Extra []string
	// TokenLabels holds a [N, T] integer "labels" array (the next-token
	// targets of a language model, -100 ignored), or nil.
	TokenLabels *Array

	// axes maps an input name to its batch axis (-1: fed whole to every
	// batch); set by Check. Inputs absent from it are batched along axis 0.
	axes map[string]int
	// derived lists model inputs the dataset lacks that Batch derives
	// (empty past_key_values.*, use_cache_branch false, position_ids from
	// attention_mask).
	derived []TensorInfo
	// batchParam is the batch dimension's dim_param ("" when unnamed).
	batchParam string

	// skipped lists the arrays LoadDatasetFor did not read.
	skipped []string
}

// NewDataset builds a dataset from arrays keyed by input name and optional
// labels, checking that every array has the same number of samples.
func NewDataset(inputs map[string]*Array, labels []int64) (*Dataset, error) {
	d := &Dataset{Inputs: inputs, Labels: labels}
	if err := d.init(); err != nil {
		return nil, err
	}
	return d, nil
}

func (d *Dataset) where() string {
	if d.Path == "" {
		return "dataset"
	}
	return "dataset " + d.Path
}

func (d *Dataset) init() error {
	if len(d.Inputs) == 0 {
		return fmt.Errorf("%w: %s is empty: it holds no input arrays", ErrDataset, d.where())
	}
	names := d.inputNames()
	// N is the common first-axis size; when the arrays disagree (inputs
	// batched along another axis, or given once), Check decides it from
	// the model's inputs.
	d.N = -1
	agree := true
	for _, n := range names {
		a := d.Inputs[n]
		if err := a.Validate(); err != nil {
			return fmt.Errorf("%w: %s: array %q: %v", ErrDataset, d.where(), n, err)
		}
		switch {
		case len(a.Shape) == 0:
			agree = false
		case d.N < 0:
			d.N = a.Shape[0]
		case a.Shape[0] != d.N:
			agree = false
		}
	}
	if !agree || d.N < 0 {
		d.N = -1
		return nil
	}
	if d.N == 0 {
		return fmt.Errorf("%w: %s is empty: its arrays have 0 samples", ErrDataset, d.where())
	}
	if d.Labels != nil && int64(len(d.Labels)) != d.N {
		return fmt.Errorf("%w: %s: %q has %d entries but the inputs have %d samples", ErrDataset, d.where(), LabelsName, len(d.Labels), d.N)
	}
	return nil
}

func (d *Dataset) inputNames() []string {
	names := make([]string, 0, len(d.Inputs))
	for n := range d.Inputs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// DefaultMaxDatasetBytes bounds the bytes of arrays that one dataset load
// reads when DatasetOptions.MaxBytes is 0: 4 GiB, or the value of the
// environment variable ONNXPOST_MAX_DATASET_BYTES (a byte count) when it
// is set.
var DefaultMaxDatasetBytes int64 = 4 << 30

func init() {
	if v, err := strconv.ParseInt(os.Getenv("ONNXPOST_MAX_DATASET_BYTES"), 10, 64); err == nil && v > 0 {
		DefaultMaxDatasetBytes = v
	}
}

// DatasetOptions selects and bounds what LoadDatasetFor reads.
type DatasetOptions struct {
	// Inputs names the arrays the model reads (its input names). A .npz's
	// other arrays, except labels, are skipped unread and listed in
	// Extra. nil reads every array.
	Inputs []string
	// MaxBytes bounds the bytes of all arrays read together (.npz data,
	// or the .pb files of a test-data folder); 0 means
	// DefaultMaxDatasetBytes. An archive entry or header that declares
	// more than what is left is refused before its data is read.
	MaxBytes int64
}

func (o DatasetOptions) maxBytes() int64 {
	if o.MaxBytes > 0 {
		return o.MaxBytes
	}
	return DefaultMaxDatasetBytes
}

// LoadDataset reads a .npz file (arrays named after the model inputs plus
// an optional integer "labels" array) or an ONNX test-data folder
// (test_data_set_*/input_*.pb and output_*.pb; the sets are concatenated
// along the first axis). It reads every array; LoadDatasetFor reads only
// those a model needs.
func LoadDataset(path string) (*Dataset, error) {
	return LoadDatasetFor(path, DatasetOptions{})
}

// LoadDatasetFor is LoadDataset reading only the arrays named in
// opt.Inputs (and labels), within opt.MaxBytes. Special files (FIFOs,
// devices, also behind symlinks) are refused before they are opened.
func LoadDatasetFor(path string, opt DatasetOptions) (*Dataset, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDataset, err)
	}
	if st.IsDir() {
		return loadTestDataDir(path, opt.maxBytes())
	}
	var want func(string) bool
	if opt.Inputs != nil {
		names := map[string]bool{LabelsName: true}
		for _, n := range opt.Inputs {
			names[n] = true
		}
		want = func(n string) bool { return names[n] }
	}
	arrays, skipped, err := readNPZSelected(path, want, opt.maxBytes())
	if errors.Is(err, npz.ErrLimit) {
		return nil, fmt.Errorf("%w: %w (raise the limit with ONNXPOST_MAX_DATASET_BYTES)", ErrDataset, err)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDataset, err)
	}
	if len(arrays) == 0 && len(skipped) > 0 {
		return nil, fmt.Errorf("%w: %s holds none of the model's inputs %s (it holds: %s)", ErrDataset, path, strings.Join(opt.Inputs, ", "), strings.Join(skipped, ", "))
	}
	d, err := datasetFromArrays(path, arrays)
	if err != nil {
		return nil, err
	}
	d.skipped = skipped
	return d, nil
}

func datasetFromArrays(path string, arrays map[string]*Array) (*Dataset, error) {
	d := &Dataset{Path: path, Inputs: map[string]*Array{}}
	if len(arrays) == 0 {
		return nil, fmt.Errorf("%w: %s is empty: it holds no arrays", ErrDataset, d.where())
	}
	for name, a := range arrays {
		if name != LabelsName {
			d.Inputs[name] = a
			continue
		}
		if len(a.Shape) == 2 && a.Shape[1] == 1 {
			a = &Array{DType: a.DType, Shape: a.Shape[:1], Data: a.Data}
		}
		if len(a.Shape) == 2 && isInteger(a.DType) {
			d.TokenLabels = a // [N, T] next-token targets
			continue
		}
		if len(a.Shape) != 1 {
			return nil, fmt.Errorf("%w: %s: %q must be a 1-D array of class ids, got shape %v", ErrDataset, d.where(), LabelsName, a.Shape)
		}
		labels, err := a.Int64()
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %q must hold integer class ids, got %v", ErrDataset, d.where(), LabelsName, a.DType)
		}
		for i, l := range labels {
			if l < 0 {
				return nil, fmt.Errorf("%w: %s: %q[%d] = %d is negative", ErrDataset, d.where(), LabelsName, i, l)
			}
		}
		d.Labels = labels
	}
	if len(d.Inputs) == 0 {
		return nil, fmt.Errorf("%w: %s holds only %q, no input arrays", ErrDataset, d.where(), LabelsName)
	}
	if err := d.init(); err != nil {
		return nil, err
	}
	return d, nil
}

// Check verifies the dataset against a model's inputs and returns one clear
// error for the first problem: a missing input, a wrong dtype, a wrong rank,
// a fixed dimension that differs, or batch axes that disagree on the number
// of samples. It records each input's batch axis (see BatchAxes) and sets
// N. Arrays that match no input are recorded in Extra and otherwise
// ignored.
func (d *Dataset) Check(inputs []TensorInfo) error {
	resolveIndexed(d.Inputs, inputs)
	have := d.inputNames()
	want := map[string]bool{}
	batchParam := batchDimParam(inputs)
	fixed := !anySymbolic(inputs)
	axes := map[string]int{}
	var derived []TensorInfo
	_, haveMask := d.Inputs["attention_mask"]
	for _, in := range inputs {
		want[in.Name] = true
		a, ok := d.Inputs[in.Name]
		if !ok {
			if derivable(in, haveMask) {
				derived = append(derived, in)
				if in.Name == "use_cache_branch" {
					axes[in.Name] = -1 // one flag for the whole batch
				}
				continue
			}
			return fmt.Errorf("%w: %s has no array for model input %q (it holds: %s)", ErrDataset, d.where(), in.Name, d.describe(have))
		}
		if a.DType != in.DType {
			return fmt.Errorf("%w: %s: array %q is %v but model input %q is %v (convert it, e.g. x.astype(np.%s))", ErrDataset, d.where(), in.Name, a.DType, in.Name, in.DType, npName(in.DType))
		}
		if in.Shape == nil {
			if len(a.Shape) == 0 {
				axes[in.Name] = -1
			}
			continue // rank unknown
		}
		if len(a.Shape) != len(in.Shape) {
			return fmt.Errorf("%w: %s: array %q has shape %v (rank %d) but model input %q has rank %d (shape %s)", ErrDataset, d.where(), in.Name, a.Shape, len(a.Shape), in.Name, len(in.Shape), fmtShape(in.Shape))
		}
		ax := batchAxis(in, a, batchParam, fixed)
		axes[in.Name] = ax
		for k := range in.Shape {
			if k != ax && in.Shape[k] >= 0 && a.Shape[k] != in.Shape[k] {
				return fmt.Errorf("%w: %s: array %q has shape %v but model input %q needs %s (axis %d differs)", ErrDataset, d.where(), in.Name, a.Shape, in.Name, fmtShape(in.Shape), k)
			}
		}
	}
	batched := false
	for _, in := range inputs {
		if ax, ok := axes[in.Name]; (!ok || ax >= 0) && d.Inputs[in.Name] != nil {
			batched = true
		}
	}
	for name, ax := range axes {
		if ax == fixedAxis {
			axes[name] = 0
			if batched {
				axes[name] = -1
			}
		}
	}
	n, first := int64(-1), ""
	for _, in := range inputs {
		ax, ok := axes[in.Name]
		a := d.Inputs[in.Name]
		if a == nil || ok && ax < 0 {
			continue
		}
		if len(a.Shape) == 0 {
			return fmt.Errorf("%w: %s: array %q is a scalar but model input %q has a batch axis", ErrDataset, d.where(), in.Name, in.Name)
		}
		rows := a.Shape[max(ax, 0)]
		switch {
		case n < 0:
			n, first = rows, in.Name
		case rows != n:
			return fmt.Errorf("%w: %s: arrays disagree on the number of samples: %q has %d along its batch axis, %q has %d along axis %d", ErrDataset, d.where(), first, n, in.Name, rows, max(ax, 0))
		}
	}
	if n < 0 {
		n = 1 // every input is given once: one run
	}
	if n == 0 {
		return fmt.Errorf("%w: %s is empty: its arrays have 0 samples", ErrDataset, d.where())
	}
	if d.Labels != nil && int64(len(d.Labels)) != n {
		return fmt.Errorf("%w: %s: %q has %d entries but the inputs have %d samples", ErrDataset, d.where(), LabelsName, len(d.Labels), n)
	}
	if d.TokenLabels != nil && d.TokenLabels.Shape[0] != n {
		return fmt.Errorf("%w: %s: %q has %d rows but the inputs have %d samples", ErrDataset, d.where(), LabelsName, d.TokenLabels.Shape[0], n)
	}
	d.N, d.axes, d.derived, d.batchParam = n, axes, derived, batchParam
	d.Extra = append(d.Extra[:0], d.skipped...)
	for _, nm := range have {
		if !want[nm] {
			d.Extra = append(d.Extra, nm)
		}
	}
	return nil
}

func (d *Dataset) describe(names []string) string {
	s := strings.Join(names, ", ")
	if d.Labels != nil {
		s += ", " + LabelsName
	}
	return s
}

func npName(t onnxio.DType) string {
	switch t {
	case onnxio.Float:
		return "float32"
	case onnxio.Double:
		return "float64"
	}
	return t.String()
}

func fmtShape(s []int64) string {
	parts := make([]string, len(s))
	for i, d := range s {
		if d < 0 {
			parts[i] = "?"
		} else {
			parts[i] = fmt.Sprint(d)
		}
	}
	return "[" + strings.Join(parts, ",") + "]"
}

// Batch returns samples [i, j) of every input: sliced along the input's
// batch axis (axis 0 unless Check found another; sharing the dataset's
// memory on axis 0), inputs without one whole, plus the inputs Check found
// derivable (empty past_key_values.*, use_cache_branch false,
// position_ids from attention_mask).
func (d *Dataset) Batch(i, j int64) map[string]*Array {
	out := make(map[string]*Array, len(d.Inputs)+len(d.derived))
	for n, a := range d.Inputs {
		ax, ok := d.axes[n]
		switch {
		case ok && ax < 0:
			out[n] = a
		case ax > 0:
			out[n] = a.sliceAxis(ax, i, j)
		default:
			out[n] = a.Slice(i, j)
		}
	}
	for _, in := range d.derived {
		out[in.Name] = deriveInput(in, out, j-i, d.batchParam)
	}
	return out
}

// Head returns a dataset view of the first n samples (all when n <= 0 or
// n >= N), sharing memory; useful for staged evaluation on growing subsets.
func (d *Dataset) Head(n int64) *Dataset {
	if n <= 0 || n >= d.N {
		return d
	}
	return d.Range(0, n)
}

// Range returns a dataset view of samples [lo, hi), sharing memory. It
// panics when the range is outside [0, N] (a caller bug).
func (d *Dataset) Range(lo, hi int64) *Dataset {
	h := &Dataset{Path: d.Path, Inputs: map[string]*Array{}, N: hi - lo, axes: d.axes, derived: d.derived, batchParam: d.batchParam}
	for n, a := range d.Inputs {
		ax, ok := d.axes[n]
		switch {
		case ok && ax < 0:
			h.Inputs[n] = a
		case ax > 0:
			h.Inputs[n] = a.sliceAxis(ax, lo, hi)
		default:
			h.Inputs[n] = a.Slice(lo, hi)
		}
	}
	if d.Labels != nil {
		h.Labels = d.Labels[lo:hi]
	}
	if d.TokenLabels != nil {
		h.TokenLabels = d.TokenLabels.Slice(lo, hi)
	}
	if d.Outputs != nil {
		h.Outputs = map[string]*Array{}
		for k, a := range d.Outputs {
			h.Outputs[k] = a.Slice(lo, hi)
		}
	}
	return h
}

// resolveIndexed renames "#i" keys (unnamed tensors of test-data folders)
// to the name of the i-th model tensor.
func resolveIndexed(m map[string]*Array, infos []TensorInfo) {
	for i, in := range infos {
		k := fmt.Sprintf("#%d", i)
		if a, ok := m[k]; ok {
			if _, named := m[in.Name]; !named {
				m[in.Name] = a
				delete(m, k)
			}
		}
	}
}
