package transform

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/onnxpost/onnxpost/onnxio"
)

func TestParamCheck(t *testing.T) {
	density := &Param{Name: "density", Doc: "d", Kind: Float, Range: Between(0, 1, "(]")}
	rank := &Param{Name: "rank", Doc: "r", Kind: Int, Range: AtLeast(1)}
	method := &Param{Name: "method", Doc: "m", Kind: Enum, Choices: []string{"rtn", "gptq"}}
	bits := &Param{Name: "bits", Doc: "b", Kind: List, Elem: Int, Range: Between(2, 8, "[]")}
	flag := &Param{Name: "force", Doc: "f", Kind: Bool}
	odd := &Param{Name: "odd", Doc: "o", Kind: Int, Validate: func(s string) error {
		if (Args{"x": s}).Int("x")%2 == 0 {
			return errors.New("want an odd number")
		}
		return nil
	}}
	for _, tc := range []struct {
		p    *Param
		v    any
		want string // "" accepts
	}{
		{density, 0.3, ""},
		{density, "1", ""},
		{density, 7.0, `density = "7": want a number in (0, 1]`},
		{density, 0.0, `density = "0": want a number in (0, 1]`},
		{density, "NaN", `want a finite number in (0, 1]`},
		{density, []any{0.1}, "want one number, not a list"},
		{rank, 3, ""},
		{rank, 4.0, ""},
		{rank, 0, `rank = "0": want an integer in >= 1`},
		{rank, 2.5, "want an integer"},
		{method, "gptq", ""},
		{method, "GPTQ", ""},
		{method, "tiez", `method = "tiez": want one of rtn, gptq`},
		{bits, []any{2, 4}, ""},
		{bits, "2,9", `element "9": want an integer in [2, 8]`},
		{bits, "", "want a non-empty list"},
		{flag, true, ""},
		{flag, "yes", "want true or false"},
		{odd, 3, ""},
		{odd, 4, "want an odd number"},
	} {
		err := tc.p.Check(tc.v)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s=%v: %v", tc.p.Name, tc.v, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrValue)):
			t.Errorf("%s=%v: error %v, want %q", tc.p.Name, tc.v, err, tc.want)
		}
	}
}

func run(context.Context, Input) (*onnxio.Model, any, error) { return nil, nil, nil }

func TestCommandCheck(t *testing.T) {
	target := func(r *Range) *Param { return &Param{Name: "target", Doc: "t", Kind: Float, Range: r} }
	space := &Param{Name: "space", Doc: "s", Kind: Enum, Choices: []string{"a", "b"}, Default: "a"}
	a := &Transform{Name: "x/a", Doc: "a", Run: run, Params: []*Param{space, target(Between(0, 1, "()"))}}
	b := &Transform{Name: "x/b", Doc: "b", Run: run, Params: []*Param{space, target(Between(2, 8, "[]")), {Name: "block", Doc: "k", Kind: Int, Default: "32"}}}
	c := &Command{Name: "x", Transforms: []*Transform{a, b}, Choose: func(v Args) (*Transform, error) {
		if tr := map[string]*Transform{"a": a, "b": b}[v.String("space")]; tr != nil {
			return tr, nil
		}
		return nil, fmt.Errorf("no space %q", v.String("space"))
	}}
	if err := Validate([]*Command{c}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		values map[string]any
		want   string
		chosen string
	}{
		{map[string]any{"target": 0.5}, "", "x/a"},
		{map[string]any{"target": 4.0}, `invalid value: target = "4": want a number in (0, 1)`, ""},
		{map[string]any{"space": "b", "target": 4.0, "block": 64}, "", "x/b"},
		{map[string]any{"space": "B", "target": 4.0}, "", "x/b"}, // choices regardless of case
		{map[string]any{"space": "b", "target": 0.5}, `target = "0.5": want a number in [2, 8]`, ""},
		{map[string]any{"space": "c"}, `space = "c": want one of a, b`, ""},
		{map[string]any{"block": "big"}, `block = "big": want an integer`, ""},
		{map[string]any{"calib": "x.npz", "target": 0.5}, "", "x/a"}, // not a parameter: the caller's
	} {
		tr, args, err := c.Check(tc.values)
		if tc.want != "" {
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%v: error %v, want %q", tc.values, err, tc.want)
			}
			continue
		}
		if err != nil || tr.Name != tc.chosen {
			t.Errorf("%v: %v, %v; want %s", tc.values, tr, err, tc.chosen)
			continue
		}
		if want, ok := tc.values["block"]; ok && args.Int("block") != want {
			t.Errorf("block = %d", args.Int("block"))
		}
	}
}

func TestValidateRejects(t *testing.T) {
	good := func() *Transform {
		return &Transform{Name: "c/v", Doc: "d", Run: run, Params: []*Param{{Name: "p", Doc: "d", Kind: Float}}}
	}
	for _, tc := range []struct {
		name string
		edit func(c *Command)
		want string
	}{
		{"no doc", func(c *Command) { c.Transforms[0].Doc = "" }, "has no Doc"},
		{"no run", func(c *Command) { c.Transforms[0].Run = nil }, "has no Run"},
		{"bad name", func(c *Command) { c.Transforms[0].Name = "other/v" }, "is not named c/variant"},
		{"enum without choices", func(c *Command) { c.Transforms[0].Params[0].Kind = Enum }, "an enum without choices"},
		{"bad default", func(c *Command) {
			c.Transforms[0].Params[0].Range, c.Transforms[0].Params[0].Default = AtLeast(1), "0"
		}, "default"},
		{"two kinds", func(c *Command) {
			u := good()
			u.Name, u.Params[0].Kind = "c/w", Int
			c.Transforms = append(c.Transforms, u)
			c.Choose = func(Args) (*Transform, error) { return u, nil }
		}, `parameter "p" is a number in one transform and a integer`},
		{"no choose", func(c *Command) {
			u := good()
			u.Name = "c/w"
			c.Transforms = append(c.Transforms, u)
		}, "no Choose"},
	} {
		c := &Command{Name: "c", Transforms: []*Transform{good()}}
		if err := Validate([]*Command{c}); err != nil {
			t.Fatalf("%s: the good command: %v", tc.name, err)
		}
		tc.edit(c)
		if err := Validate([]*Command{c}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}
