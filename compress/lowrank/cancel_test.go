package lowrank

import (
	"context"
	"errors"
	"testing"
)

// A cancelled Apply returns the context's error and leaves the model as it
// was.
func TestApplyCancelled(t *testing.T) {
	m := denseModel(t)
	before := graphText(t, m)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Apply(ctx, m, Options{Rule: Rule{ByRank, 2}}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if graphText(t, m) != before {
		t.Error("a cancelled Apply changed the model")
	}
}
