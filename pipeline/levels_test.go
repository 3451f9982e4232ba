package pipeline

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/onnxpost/onnxpost/onnxio"
)

// countingDB returns a disk-backed LevelDB whose builder halves the values
// and counts its calls, and whose warnings are collected.
func countingDB(dir string, builds *int, warnings *[]string) *LevelDB {
	return &LevelDB{Dir: dir, ModelHash: "m", Method: "test", Build: func(_ context.Context, _ onnxio.Weight, v []float32, level int64) ([]float32, error) {
		*builds++
		out := make([]float32, len(v))
		for i, x := range v {
			out[i] = x / float32(level)
		}
		return out, nil
	}, Log: func(format string, args ...any) { *warnings = append(*warnings, fmt.Sprintf(format, args...)) }}
}

func TestLevelCacheVerified(t *testing.T) {
	w := onnxio.Weight{Name: "fc.w"}
	dense := []float32{1, 2, 3, 4, 5, 6}
	want := []float32{0.5, 1, 1.5, 2, 2.5, 3}
	entry := func(dir string) string {
		k := (&LevelDB{ModelHash: "m", Method: "test"}).Key(w.Name, 2)
		return filepath.Join(dir, k[:2], k+levelExt)
	}
	valueOffset := levelHeader // first value's byte offset
	cases := []struct {
		name   string
		poison func(t *testing.T, path string)
		reason string
	}{
		{"values replaced, checksum kept", func(t *testing.T, path string) {
			b := readAll(t, path)
			binary.LittleEndian.PutUint32(b[valueOffset:], math.Float32bits(1e30))
			writeAll(t, path, b)
		}, "checksum mismatch"},
		{"values and checksum replaced with a bad key", func(t *testing.T, path string) {
			// a forged entry that is self-consistent but carries another key
			b := readAll(t, path)
			b[len(levelMagic)] ^= 0xff
			sum := sha256.Sum256(b[:len(b)-sha256.Size])
			copy(b[len(b)-sha256.Size:], sum[:])
			writeAll(t, path, b)
		}, "written for another key"},
		{"truncated", func(t *testing.T, path string) {
			b := readAll(t, path)
			writeAll(t, path, b[:len(b)-5])
		}, "bytes, want"},
		{"old raw float32 format", func(t *testing.T, path string) {
			b := make([]byte, 4*len(dense))
			for i := range dense {
				binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(99))
			}
			writeAll(t, path, b)
		}, "bytes, want"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			var builds int
			var warns []string
			db := countingDB(dir, &builds, &warns)
			if v, err := db.Get(context.Background(), w, dense, 2); err != nil || !slices.Equal(v, want) {
				t.Fatalf("first Get = %v, %v", v, err)
			}
			// a fresh database reads the verified entry without building
			db = countingDB(dir, &builds, &warns)
			if v, err := db.Get(context.Background(), w, dense, 2); err != nil || !slices.Equal(v, want) || builds != 1 {
				t.Fatalf("cached Get = %v, %v after %d builds", v, err, builds)
			}
			tc.poison(t, entry(dir))
			db = countingDB(dir, &builds, &warns)
			v, err := db.Get(context.Background(), w, dense, 2)
			if err != nil || !slices.Equal(v, want) {
				t.Fatalf("Get over a poisoned entry = %v, %v, want the rebuilt %v", v, err, want)
			}
			if builds != 2 {
				t.Errorf("%d builds, want 2 (the poisoned entry rebuilt)", builds)
			}
			if len(warns) != 1 || !strings.Contains(warns[0], "discarding cache entry") || !strings.Contains(warns[0], tc.reason) {
				t.Errorf("warnings %q, want one naming %q", warns, tc.reason)
			}
			// the entry was rewritten and verifies again
			if got, err := readLevel(entry(dir), (&LevelDB{ModelHash: "m", Method: "test"}).Key(w.Name, 2), len(dense)); err != nil || !slices.Equal(got, want) {
				t.Errorf("rewritten entry: %v, %v", got, err)
			}
		})
	}
}

func TestLevelCacheDirPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cache")
	var builds int
	var warns []string
	db := countingDB(dir, &builds, &warns)
	if _, err := db.Get(context.Background(), onnxio.Weight{Name: "x"}, []float32{1}, 1); err != nil {
		t.Fatal(err)
	}
	k := db.Key("x", 1)
	st, err := os.Stat(filepath.Join(dir, k[:2]))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		t.Errorf("cache folder mode %v, want private", st.Mode().Perm())
	}
}

func TestDecodeLevelErrors(t *testing.T) {
	key := (&LevelDB{}).Key("w", 1)
	good := encodeLevel(key, []float32{1, 2})
	if v, err := decodeLevel(good, key, 2); err != nil || !slices.Equal(v, []float32{1, 2}) {
		t.Fatalf("round trip: %v, %v", v, err)
	}
	for name, tc := range map[string]struct {
		b   []byte
		key string
		n   int
	}{
		"empty":         {nil, key, 0},
		"wrong count":   {good, key, 3},
		"negative":      {good, key, -1},
		"other key":     {good, (&LevelDB{}).Key("w", 2), 2},
		"bad key":       {good, "zz", 2},
		"bad magic":     {append([]byte("X"), good[1:]...), key, 2},
		"flipped value": {flip(good, levelHeader+1), key, 2},
		"flipped sum":   {flip(good, len(good)-1), key, 2},
	} {
		if _, err := decodeLevel(tc.b, tc.key, tc.n); !errors.Is(err, ErrCacheEntry) {
			t.Errorf("%s: err = %v, want ErrCacheEntry", name, err)
		}
	}
}

// FuzzLevelCache feeds arbitrary bytes to the level cache reader: it must
// never panic, and whatever it accepts must be exactly what encodeLevel
// writes for those values.
func FuzzLevelCache(f *testing.F) {
	key := (&LevelDB{}).Key("w", 1)
	f.Add(encodeLevel(key, []float32{1, 2, 3}), 3)
	f.Add(encodeLevel(key, nil), 0)
	f.Add([]byte(levelMagic), 1)
	f.Fuzz(func(t *testing.T, b []byte, n int) {
		if n > 1<<20 {
			n = 1 << 20
		}
		v, err := decodeLevel(b, key, n)
		if err != nil {
			if !errors.Is(err, ErrCacheEntry) {
				t.Fatalf("error %v is not an ErrCacheEntry", err)
			}
			return
		}
		if len(v) != n || !bytes.Equal(encodeLevel(key, v), b) {
			t.Fatalf("accepted an entry that encodeLevel would not write")
		}
	})
}

func flip(b []byte, i int) []byte {
	c := append([]byte(nil), b...)
	c[i] ^= 1
	return c
}

func readAll(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeAll(t *testing.T, p string, b []byte) {
	t.Helper()
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// A cancelled context stops the level database before it builds anything.
func TestLevelDBCancelled(t *testing.T) {
	var builds int
	var warns []string
	db := countingDB(t.TempDir(), &builds, &warns)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := db.Get(ctx, onnxio.Weight{Name: "x"}, []float32{1, 2}, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if builds != 0 {
		t.Errorf("%d builds after cancellation", builds)
	}
	if _, err := ApplyAllocation(ctx, onnxio.New("m", 17), Allocation{Layers: []LayerChoice{{Name: "x"}}}, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("ApplyAllocation: err = %v, want context.Canceled", err)
	}
}

// BenchmarkLevelCacheRead measures reading and verifying one cache entry
// of a 2048×2048 layer (16 MiB of values), the SHA-256 check included.
func BenchmarkLevelCacheRead(b *testing.B) {
	const n = 2048 * 2048
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(i%1000) / 1000
	}
	key := (&LevelDB{}).Key("w", 1)
	path := filepath.Join(b.TempDir(), "entry"+levelExt)
	if err := os.WriteFile(path, encodeLevel(key, v), 0o600); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(4 * n)
	b.ResetTimer()
	for range b.N {
		if _, err := readLevel(path, key, n); err != nil {
			b.Fatal(err)
		}
	}
}
