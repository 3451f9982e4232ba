package lowrank

import "testing"

// TestRuleString: a rule renders as its parameter's name and value, the
// way a report's rule reads to library and recipe users alike.
func TestRuleString(t *testing.T) {
	for _, c := range []struct {
		r    Rule
		want string
	}{
		{Rule{ByEnergy, 0.9}, "energy 0.9"},
		{Rule{ByRankRatio, 0.25}, "rank-ratio 0.25"},
		{Rule{ByRank, 8}, "rank 8"},
		{Rule{ByParamsRatio, 0.5}, "params-ratio 0.5"},
		{Rule{}, "no rank rule"},
	} {
		if got := c.r.String(); got != c.want {
			t.Errorf("%#v.String() = %q, want %q", c.r, got, c.want)
		}
	}
}
