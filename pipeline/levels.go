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

	"github.com/onnxpost/onnxpost/onnxio"
)

// LevelBuilder computes the weights of one layer at one compression level:
// for sparsity, the layer's weights with exactly zeros entries set to zero.
type LevelBuilder func(w onnxio.Weight, values []float32, zeros int64) ([]float32, error)

// LevelDB is a per-layer ladder of compressed weights, built on demand and
// cached in memory and, when Dir is set, on disk content-addressed by the
// model's hash, the method, the layer and the level, so later runs reuse it.
type LevelDB struct {
	// Dir is the on-disk cache folder ("" keeps the cache in memory only).
	Dir string
	// ModelHash identifies the dense model (sha256 of its weights).
	ModelHash string
	// Method names the compression method (part of the cache key).
	Method string
	// Build computes a level that is not cached.
	Build LevelBuilder

	mem map[string][]float32
}

func (db *LevelDB) key(layer string, zeros int64) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%d", db.ModelHash, db.Method, layer, zeros)
	return hex.EncodeToString(h.Sum(nil))
}

// Get returns layer w's weights with `zeros` zeros.
func (db *LevelDB) Get(w onnxio.Weight, dense []float32, zeros int64) ([]float32, error) {
	k := db.key(w.Name, zeros)
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
			db.mem[k] = v
			return v, nil
		}
	}
	v, err := db.Build(w, dense, zeros)
	if err != nil {
		return nil, fmt.Errorf("level %d zeros of %q: %w", zeros, w.Name, err)
	}
	if len(v) != len(dense) {
		return nil, fmt.Errorf("level builder returned %d values for %q, want %d", len(v), w.Name, len(dense))
	}
	db.mem[k] = v
	if path != "" {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err == nil {
			_ = writeF32(path, v) // the cache is an optimization: a failed write is not fatal
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
	idx := make([]int, len(values))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool {
		return math.Abs(float64(values[idx[a]])) < math.Abs(float64(values[idx[b]]))
	})
	out := append([]float32(nil), values...)
	for _, i := range idx[:zeros] {
		out[i] = 0
	}
	return out, nil
}
