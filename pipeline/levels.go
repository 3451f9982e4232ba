package pipeline

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/onnxpost/onnxpost/onnxio"
)

// LevelBuilder computes the weights of one layer at one compression level,
// dense-shaped: for sparsity the layer's weights with exactly `level`
// entries set to zero, for rank the product of the rank-`level` factors,
// for bits the weights quantized to `level` bits and dequantized.
type LevelBuilder func(w onnxio.Weight, values []float32, level int64) ([]float32, error)

// LevelDB is a per-layer ladder of compressed weights, built on demand and
// cached in memory and, when Dir is set, on disk content-addressed by the
// model's hash, the method, the calibration data's hash, the layer and the
// level, so later runs reuse it. With Dir set, the memory cache is not
// kept (the disk files are read back through the page cache): ladders of
// real models do not fit in memory twice.
type LevelDB struct {
	// Dir is the on-disk cache folder ("" keeps the cache in memory only).
	Dir string
	// ModelHash identifies the dense model (sha256 of its bytes).
	ModelHash string
	// Method names the space and compression method, with any option that
	// changes the levels (part of the cache key).
	Method string
	// CalibHash identifies the calibration data the levels depend on ("" for
	// data-free methods; part of the cache key).
	CalibHash string
	// Build computes a level that is not cached.
	Build LevelBuilder

	mem map[string][]float32
}

// Key returns the content address of one level of one layer.
func (db *LevelDB) Key(layer string, level int64) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00%d", db.ModelHash, db.Method, db.CalibHash, layer, level)
	return hex.EncodeToString(h.Sum(nil))
}

// Get returns layer w's weights at the given level (zeros, rank, bits).
func (db *LevelDB) Get(w onnxio.Weight, dense []float32, level int64) ([]float32, error) {
	k := db.Key(w.Name, level)
	if v, ok := db.mem[k]; ok {
		return v, nil
	}
	if db.mem == nil {
		db.mem = map[string][]float32{}
	}
	var path string
	if db.Dir != "" {
		path = filepath.Join(db.Dir, k[:2], k+".f32")
		if v, err := readF32(path, len(dense)); err == nil {
			return v, nil
		}
	}
	v, err := db.Build(w, dense, level)
	if err != nil {
		return nil, fmt.Errorf("level %d of %q: %w", level, w.Name, err)
	}
	if len(v) != len(dense) {
		return nil, fmt.Errorf("level builder returned %d values for %q, want %d", len(v), w.Name, len(dense))
	}
	if path == "" {
		db.mem[k] = v
	} else {
		// the cache is an optimization: a failed write is not fatal, the
		// level then stays in memory
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil || writeF32(path, v) != nil {
			db.mem[k] = v
		}
	}
	return v, nil
}

func readF32(path string, n int) ([]float32, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) != 4*n {
		return nil, fmt.Errorf("cache entry %s has %d bytes, want %d", path, len(b), 4*n)
	}
	v := make([]float32, n)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v, nil
}

func writeF32(path string, v []float32) error {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return onnxio.WriteFileAtomic(path, b)
}

// MagnitudeLevel zeroes the `zeros` entries of smallest magnitude (ties
// broken by index, so levels are nested and deterministic).
func MagnitudeLevel(_ onnxio.Weight, values []float32, zeros int64) ([]float32, error) {
	if zeros < 0 || zeros > int64(len(values)) {
		return nil, fmt.Errorf("%d zeros for %d weights", zeros, len(values))
	}
	return pruneInOrder(values, magnitudeOrder(values), zeros), nil
}

// magnitudeOrder returns the indices of values by increasing magnitude,
// ties by index.
func magnitudeOrder(values []float32) []int32 {
	idx := make([]int32, len(values))
	for i := range idx {
		idx[i] = int32(i)
	}
	sort.SliceStable(idx, func(a, b int) bool {
		return math.Abs(float64(values[idx[a]])) < math.Abs(float64(values[idx[b]]))
	})
	return idx
}

func pruneInOrder(values []float32, order []int32, zeros int64) []float32 {
	out := append([]float32(nil), values...)
	for _, i := range order[:zeros] {
		out[i] = 0
	}
	return out
}

// MagnitudeLevels returns a builder with MagnitudeLevel's results that
// sorts each layer once (by weight name) instead of once per level.
func MagnitudeLevels() LevelBuilder {
	var mu sync.Mutex
	orders := map[string][]int32{}
	return func(w onnxio.Weight, values []float32, zeros int64) ([]float32, error) {
		if zeros < 0 || zeros > int64(len(values)) {
			return nil, fmt.Errorf("%d zeros for %d weights", zeros, len(values))
		}
		mu.Lock()
		order, ok := orders[w.Name]
		mu.Unlock()
		if !ok || len(order) != len(values) {
			order = magnitudeOrder(values)
			mu.Lock()
			orders[w.Name] = order
			mu.Unlock()
		}
		return pruneInOrder(values, order, zeros), nil
	}
}
