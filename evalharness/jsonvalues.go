package evalharness

import (
	"encoding/json"
	"math"
	"sort"
	"strings"
)

// Metrics maps metric names to values. A metric of a named output (with
// several outputs measured) has the key "OUTPUT.metric"; in JSON those are
// nested objects, "metrics": {"kl": 0.1, "OUTPUT": {"kl": 0.1}}. A NaN or
// ±Inf value is written as null (and read back as NaN).
type Metrics map[string]float64

// MarshalJSON writes the metrics, nesting per-output ones and writing
// non-finite values as null.
func (m Metrics) MarshalJSON() ([]byte, error) {
	out := map[string]any{}
	for k, v := range m {
		var val any = v
		if !finite(v) {
			val = nil
		}
		if i := strings.LastIndexByte(k, '.'); i > 0 {
			sub, _ := out[k[:i]].(map[string]any)
			if sub == nil {
				sub = map[string]any{}
				out[k[:i]] = sub
			}
			sub[k[i+1:]] = val
			continue
		}
		out[k] = val
	}
	return json.Marshal(out)
}

// UnmarshalJSON reads what MarshalJSON writes.
func (m *Metrics) UnmarshalJSON(b []byte) error {
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	*m = Metrics{}
	for k, v := range raw {
		switch x := v.(type) {
		case float64:
			(*m)[k] = x
		case nil:
			(*m)[k] = math.NaN()
		case map[string]any:
			for sk, sv := range x {
				f, ok := sv.(float64)
				if !ok {
					f = math.NaN()
				}
				(*m)[k+"."+sk] = f
			}
		}
	}
	return nil
}

// Nonfinite returns the sorted names of the non-finite values.
func (m Metrics) Nonfinite() []string {
	var out []string
	for k, v := range m {
		if !finite(v) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

type sumsJSON Sums

// MarshalJSON writes the sums; non-finite float sums are written as 0 and
// named in nonfinite_fields.
func (a Sums) MarshalJSON() ([]byte, error) {
	c := a
	c.NonfiniteFields = nil
	for name, p := range c.floatFields() {
		if !finite(*p) {
			if c.NonfiniteFields == nil {
				c.NonfiniteFields = map[string]string{}
			}
			c.NonfiniteFields[name] = formatNonfinite(*p)
			*p = 0
		}
	}
	return json.Marshal(sumsJSON(c))
}

// UnmarshalJSON reads what MarshalJSON writes.
func (a *Sums) UnmarshalJSON(b []byte) error {
	var s sumsJSON
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	*a = Sums(s)
	fields := a.floatFields()
	for name, v := range a.NonfiniteFields {
		if p, ok := fields[name]; ok {
			switch v {
			case "+Inf":
				*p = math.Inf(1)
			case "-Inf":
				*p = math.Inf(-1)
			default:
				*p = math.NaN()
			}
		}
	}
	return nil
}

func formatNonfinite(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	}
	return "NaN"
}
