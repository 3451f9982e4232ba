package evalharness

import (
	"errors"
	"strings"
	"testing"
)

func TestParseGate(t *testing.T) {
	good := []struct {
		expr string
		want []Condition
	}{
		{"", nil},
		{"accuracy>=0.9", []Condition{{"accuracy", ">=", 0.9}}},
		{" accuracy_drop <= 0.01 , kl<=2e-2 ", []Condition{{"accuracy_drop", "<=", 0.01}, {"kl", "<=", 0.02}}},
		{"agreement>0.99,cosine==1,mse<1", []Condition{{"agreement", ">", 0.99}, {"cosine", "==", 1}, {"mse", "<", 1}}},
		{"latency_p50_ms<=2.5,throughput>=1000", []Condition{{"latency_p50_ms", "<=", 2.5}, {"throughput", ">=", 1000}}},
	}
	for _, c := range good {
		g, err := ParseGate(c.expr)
		if err != nil {
			t.Errorf("%q: %v", c.expr, err)
			continue
		}
		if len(g.Conditions) != len(c.want) {
			t.Errorf("%q: %v, want %v", c.expr, g.Conditions, c.want)
			continue
		}
		for i := range c.want {
			if g.Conditions[i] != c.want[i] {
				t.Errorf("%q: condition %d = %v, want %v", c.expr, i, g.Conditions[i], c.want[i])
			}
		}
	}
	bad := []struct{ expr, want string }{
		{"accuracy", "not METRIC<=VALUE"},
		{"accuracy>=", "not a number"},
		{"accuracy>=abc", "not a number"},
		{"f1>=0.5", "unknown metric"},
		{"accuracy=>0.5", "unknown operator"},
		{"accuracy!=0.5", "unknown operator"},
		{"accuracy>=0.5,,kl<=1", "empty condition"},
		{">=0.5", "not METRIC<=VALUE"},
		{"accuracy>=NaN", "not a number"},
	}
	for _, c := range bad {
		_, err := ParseGate(c.expr)
		if err == nil || !errors.Is(err, ErrGate) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want ErrGate containing %q", c.expr, err, c.want)
		}
	}
}

func TestGateCheck(t *testing.T) {
	cand := map[string]float64{"accuracy": 0.90, "kl": 0.01, "agreement": 0.995}
	ref := map[string]float64{"accuracy": 0.915}
	cases := []struct {
		expr   string
		passed bool
		reason string
	}{
		{"", true, ""},
		{"accuracy>=0.9", true, ""},
		{"accuracy>0.9", false, "measured 0.9"},
		{"accuracy_drop<=0.02", true, ""},
		{"accuracy_drop<=0.01", false, "measured 0.015"},
		{"kl<=0.02,agreement>=0.99", true, ""},
		{"kl<=0.02,agreement>=0.999", false, "agreement>=0.999"},
		{"cosine>=0.99", false, "not measured"},
		{"top5_drop<=0.01", false, "not measured"},
		{"kl_drop<=0.01", false, "reference's kl was not measured"},
	}
	for _, c := range cases {
		g, err := ParseGate(c.expr)
		if err != nil {
			t.Fatal(err)
		}
		r := g.Check(cand, ref)
		if r.Passed != c.passed {
			t.Errorf("%q: passed = %v, want %v (%s)", c.expr, r.Passed, c.passed, r.Failed())
		}
		if !c.passed && !strings.Contains(r.Failed(), c.reason) {
			t.Errorf("%q: failure %q does not mention %q", c.expr, r.Failed(), c.reason)
		}
	}
}

func TestGateMetrics(t *testing.T) {
	g, _ := ParseGate("accuracy_drop<=0.01,latency_p90_ms<=3,kl<=1")
	names, needRef := g.Metrics()
	if strings.Join(names, ",") != "accuracy,latency,kl" || !needRef {
		t.Errorf("Metrics() = %v, %v", names, needRef)
	}
	g, _ = ParseGate("accuracy>=0.5")
	if _, needRef := g.Metrics(); needRef {
		t.Error("accuracy>=0.5 should not need a reference")
	}
}
