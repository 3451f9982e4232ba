package safe

import (
	"errors"
	"runtime"
	"strings"
	"testing"
)

func TestCallRecovers(t *testing.T) {
	err := Call("op", func() error {
		var s []int
		_ = s[3] // index out of range
		return nil
	})
	var pe *PanicError
	if !errors.As(err, &pe) {
		t.Fatalf("err = %v, want a *PanicError", err)
	}
	if !strings.HasPrefix(err.Error(), "internal error: op: runtime error: index out of range") {
		t.Errorf("message %q", err)
	}
	var re runtime.Error
	if !errors.As(err, &re) {
		t.Error("the runtime.Error is not unwrapped")
	}
	if !strings.Contains(string(pe.Stack), "safe_test.go") {
		t.Error("the stack does not show the panicking function")
	}
}

func TestGoRecoversWorker(t *testing.T) {
	err := <-Go("worker", func() error { panic("boom") })
	if err == nil || err.Error() != "internal error: worker: boom" {
		t.Fatalf("err = %v", err)
	}
	want := errors.New("plain")
	if err := <-Go("worker", func() error { return want }); err != want {
		t.Fatalf("err = %v, want %v", err, want)
	}
	// a re-raised PanicError keeps its first operation
	err = Call("outer", func() error {
		panic(<-Go("inner", func() error { panic(1) }))
	})
	if err == nil || err.Error() != "internal error: inner: 1" {
		t.Fatalf("re-raised: %v", err)
	}
}
