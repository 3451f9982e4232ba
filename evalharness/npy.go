package evalharness

import (
	"fmt"
	"io"
	"strconv"

	"github.com/onnxpost/onnxpost/evalharness/npz"
	"github.com/onnxpost/onnxpost/onnxio"
)

// ErrNPY reports a malformed or unsupported .npy/.npz file (it is
// npz.ErrFormat).
var ErrNPY = npz.ErrFormat

// ReadNPZ reads every array of a .npz file (see package npz for what is
// supported and the limits that apply), keyed by name.
func ReadNPZ(path string) (map[string]*Array, error) {
	m, err := npz.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := make(map[string]*Array, len(m))
	for k, a := range m {
		out[k] = &Array{DType: onnxio.DType(a.Type), Shape: a.Shape, Data: a.Data}
	}
	return out, nil
}

// readNPZSelected reads the arrays of a .npz file that want selects (all
// when want is nil), at most maxBytes of data in all, and names the
// arrays it skipped unread.
func readNPZSelected(path string, want func(string) bool, maxBytes int64) (map[string]*Array, []string, error) {
	lim := npz.DefaultLimits
	lim.MaxTotalBytes = maxBytes
	m, skipped, err := lim.ReadFileSelected(path, want)
	if err != nil {
		return nil, nil, err
	}
	out := make(map[string]*Array, len(m))
	for k, a := range m {
		out[k] = &Array{DType: onnxio.DType(a.Type), Shape: a.Shape, Data: a.Data}
	}
	return out, skipped, nil
}

// WriteNPZ writes arrays to path as an uncompressed .npz (like numpy.savez),
// atomically.
func WriteNPZ(path string, arrays map[string]*Array) error {
	m := make(map[string]*npz.Array, len(arrays))
	for k, a := range arrays {
		t := npz.Type(a.DType)
		if t.Size() == 0 || a.DType == onnxio.BFloat16 {
			return fmt.Errorf("%w: array %q: numpy has no %v type", ErrArray, k, a.DType)
		}
		m[k] = &npz.Array{Type: t, Shape: a.Shape, Data: a.Data}
	}
	return npz.WriteFile(path, m)
}

// readNPYFile reads one .npy array.
func readNPYFile(r io.Reader) (*Array, error) {
	a, err := npz.ReadNPY(r)
	if err != nil {
		return nil, err
	}
	return &Array{DType: onnxio.DType(a.Type), Shape: a.Shape, Data: a.Data}, nil
}

func fmtInt(i int) string { return strconv.Itoa(i) }
