package pipeline

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"

	"github.com/onnxpost/onnxpost/compress/sparsity"
	"github.com/onnxpost/onnxpost/onnxio"
)

// LevelBuilder computes the weights of one layer at one compression level,
// dense-shaped: for sparsity the layer's weights with exactly `level`
// entries set to zero, for rank the product of the rank-`level` factors,
// for bits the weights quantized to `level` bits and dequantized. A long
// builder (SparseGPT, GPTQ) stops with ctx's error when ctx is cancelled.
type LevelBuilder func(ctx context.Context, w onnxio.Weight, values []float32, level int64) ([]float32, error)

// LevelDB is a per-layer ladder of compressed weights, built on demand and
// cached in memory and, when Dir is set, on disk content-addressed by the
// model's hash, the method, the calibration data's hash, the layer and the
// level, so later runs reuse it. With Dir set, the memory cache is not
// kept (the disk files are read back through the page cache): ladders of
// real models do not fit in memory twice.
//
// A disk entry is trusted only after it is verified: it carries its key
// and the SHA-256 of the key and the values, checked before the values are
// used. An entry that fails the check (truncated, corrupted, written for
// another key, edited) is discarded with a warning and the level is
// rebuilt. The check stops accidents and stale or copied files; it is not
// a signature: anyone who can write to Dir can also write a valid entry,
// so Dir must be private to the user (it is created 0700).
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
	// Log, if set, receives the warnings about discarded cache entries
	// (default: standard error).
	Log func(format string, args ...any)

	mem map[string][]float32
}

// Key returns the content address of one level of one layer.
func (db *LevelDB) Key(layer string, level int64) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00%d", db.ModelHash, db.Method, db.CalibHash, layer, level)
	return hex.EncodeToString(h.Sum(nil))
}

// Get returns layer w's weights at the given level (zeros, rank, bits),
// building it unless a verified copy is cached. It returns ctx's error
// before building when ctx is cancelled.
func (db *LevelDB) Get(ctx context.Context, w onnxio.Weight, dense []float32, level int64) ([]float32, error) {
	k := db.Key(w.Name, level)
	if v, ok := db.mem[k]; ok {
		return v, nil
	}
	if db.mem == nil {
		db.mem = map[string][]float32{}
	}
	var path string
	if db.Dir != "" {
		path = filepath.Join(db.Dir, k[:2], k+levelExt)
		v, err := readLevel(path, k, len(dense))
		switch {
		case err == nil:
			return v, nil
		case !errors.Is(err, fs.ErrNotExist):
			db.warnf("discarding cache entry %s (level %d of %q): %v; rebuilding it", path, level, w.Name, err)
			_ = os.Remove(path)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	v, err := db.Build(ctx, w, dense, level)
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
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil || onnxio.WriteFileAtomic(path, encodeLevel(k, v)) != nil {
			db.mem[k] = v
		}
	}
	return v, nil
}

func (db *LevelDB) warnf(format string, args ...any) {
	if db.Log != nil {
		db.Log("warning: "+format, args...)
		return
	}
	fmt.Fprintf(os.Stderr, "onnxpost: warning: "+format+"\n", args...)
}

// ErrCacheEntry reports a level cache entry that failed verification.
var ErrCacheEntry = errors.New("invalid level cache entry")

// A level cache entry is levelMagic, the 32-byte key, the value count
// (uint64 little-endian), the float32 values (little-endian) and the
// SHA-256 of everything before it.
const (
	levelMagic  = "onnxpost-level-v2\n"
	levelExt    = ".level"
	levelHeader = len(levelMagic) + sha256.Size + 8
)

// encodeLevel returns the cache entry of values v under key (hex SHA-256).
func encodeLevel(key string, v []float32) []byte {
	kb, err := hex.DecodeString(key)
	if err != nil || len(kb) != sha256.Size {
		panic("pipeline: level key is not a hex SHA-256: " + key)
	}
	b := make([]byte, 0, levelHeader+4*len(v)+sha256.Size)
	b = append(b, levelMagic...)
	b = append(b, kb...)
	b = binary.LittleEndian.AppendUint64(b, uint64(len(v)))
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	sum := sha256.Sum256(b)
	return append(b, sum[:]...)
}

// decodeLevel verifies a cache entry against key and the expected count n
// and returns its values; any mismatch is an ErrCacheEntry.
func decodeLevel(b []byte, key string, n int) ([]float32, error) {
	kb, err := hex.DecodeString(key)
	if err != nil || len(kb) != sha256.Size {
		return nil, fmt.Errorf("%w: key %q is not a hex SHA-256", ErrCacheEntry, key)
	}
	if n < 0 || len(b) < levelHeader+sha256.Size || string(b[:len(levelMagic)]) != levelMagic {
		return nil, fmt.Errorf("%w: not a level cache entry", ErrCacheEntry)
	}
	if got := uint64(len(b) - levelHeader - sha256.Size); got != 4*uint64(n) {
		return nil, fmt.Errorf("%w: %d bytes of values, want %d", ErrCacheEntry, got, 4*n)
	}
	body, sum := b[:len(b)-sha256.Size], b[len(b)-sha256.Size:]
	if want := sha256.Sum256(body); !bytes.Equal(sum, want[:]) {
		return nil, fmt.Errorf("%w: checksum mismatch (corrupted or edited)", ErrCacheEntry)
	}
	if !bytes.Equal(b[len(levelMagic):len(levelMagic)+sha256.Size], kb) {
		return nil, fmt.Errorf("%w: written for another key", ErrCacheEntry)
	}
	if c := binary.LittleEndian.Uint64(b[len(levelMagic)+sha256.Size:]); c != uint64(n) {
		return nil, fmt.Errorf("%w: %d values, want %d", ErrCacheEntry, c, n)
	}
	v := make([]float32, n)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[levelHeader+4*i:]))
	}
	return v, nil
}

// readLevel reads and verifies the cache entry at path.
func readLevel(path, key string, n int) ([]float32, error) {
	st, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: not a regular file", ErrCacheEntry)
	}
	if want := int64(levelHeader+sha256.Size) + 4*int64(n); st.Size() != want {
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrCacheEntry, st.Size(), want)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return decodeLevel(b, key, n)
}

// MagnitudeLevel zeroes the `zeros` entries of smallest magnitude with
// package sparsity's one magnitude pruner (sparsity.PruneWeightMagnitude:
// ties prune the higher index first in the layer's matrix view, so levels
// are nested and deterministic and equal to what sparsity's magnitude
// method prunes at the same count).
func MagnitudeLevel(_ context.Context, w onnxio.Weight, values []float32, zeros int64) ([]float32, error) {
	if zeros < 0 || zeros > int64(len(values)) {
		return nil, fmt.Errorf("%d zeros for %d weights", zeros, len(values))
	}
	return sparsity.PruneWeightMagnitude(w, values, int(zeros))
}

// MagnitudeLevels returns MagnitudeLevel as a LevelBuilder. (It used to
// cache a sorted order per layer; the selection is linear per level, and
// one pruner for search and sparsify matters more.)
func MagnitudeLevels() LevelBuilder { return MagnitudeLevel }
