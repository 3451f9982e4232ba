package lowrank

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// benchMatrix returns an n×n Gaussian matrix.
func benchMatrix(n int) []float64 {
	return randVec(rand.New(rand.NewPCG(uint64(n), 1)), n*n)
}

// BenchmarkSVD times the exact SVD (default backend, see internal/linalg)
// against the randomized SVD (rank 64, oversampling 10, adaptive power
// iterations) on a 1024×1024 matrix.
func BenchmarkSVD(b *testing.B) {
	benchSVD(b, 1024)
}

// BenchmarkSVDLarge is the same on 2048×2048 and 4096×4096. The exact SVD
// takes minutes there with gonum's pure-Go LAPACK (about 64× the 1024² time
// at 4096²), so this benchmark runs only when the -bench pattern names it
// explicitly: go test -run '^$' -bench SVDLarge -benchtime 1x
// ./compress/lowrank (or -bench 'SVDLarge/randomized' for the fast half).
func BenchmarkSVDLarge(b *testing.B) {
	if f := flag.Lookup("test.bench"); f == nil || !strings.Contains(f.Value.String(), "Large") {
		b.Skip("2048² and 4096² run only with -bench SVDLarge")
	}
	for _, n := range []int{2048, 4096} {
		benchSVD(b, n)
	}
}

func benchSVD(b *testing.B, n int) {
	w := benchMatrix(n)
	for _, r := range []int{64, 256} {
		b.Run(fmt.Sprintf("randomized/%dx%d/r%d", n, n, r), func(b *testing.B) {
			b.SetBytes(int64(8 * n * n))
			for i := 0; i < b.N; i++ {
				if _, err := RandomizedSVD(w, n, n, r, RandomizedOptions{Seed: 1}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run(fmt.Sprintf("exact/%dx%d", n, n), func(b *testing.B) {
		b.SetBytes(int64(8 * n * n))
		for i := 0; i < b.N; i++ {
			if _, err := ExactSVD(w, n, n); err != nil {
				b.Fatal(err)
			}
		}
	})
}
