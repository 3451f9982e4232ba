//go:build cgo && unix

package linalg

import (
	"strings"
	"testing"
)

// TestLoadFailures: a library that is not there, or one without the
// kernels, is an error naming the cause (the backend then stays pure Go),
// never a crash.
func TestLoadFailures(t *testing.T) {
	cases := []struct {
		names []string
		want  string
	}{
		{[]string{"libonnxpost-no-such-blas.so.9"}, "OpenBLAS not found"},
		{[]string{"libm.so.6"}, "lacks cblas_dgemm"},
	}
	for _, c := range cases {
		_, err := loadOpenBLAS(c.names)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("loadOpenBLAS(%v) = %v, want an error containing %q", c.names, err, c.want)
		}
	}
}
