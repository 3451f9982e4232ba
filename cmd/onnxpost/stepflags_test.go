package main

import (
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/onnxpost/onnxpost/pipeline"
)

// A recipe step reads its command's options with the command line's
// types and defaults: every flag of every step command that is not a
// declared parameter, and that a recipe step may set, is declared by
// pipeline.StepOption alike (so that the library's entry points see the
// same values from a step as from the command line).
func TestStepFlagsMatchCommandLine(t *testing.T) {
	recipeSets := map[string]bool{"o": true, "output": true, "report": true, "json": true, "gate": true, "keep-rejected": true, "ort-lib": true,
		"help": true, "h": true} // help: urfave/cli adds it when an App runs
	for _, name := range pipeline.StepCommands() {
		var cmd *cli.Command
		for _, c := range commands {
			if c.Name == name {
				cmd = c
			}
		}
		if cmd == nil {
			t.Errorf("step command %s has no command", name)
			continue
		}
		reg := pipeline.CommandNamed(name)
		for _, f := range cmd.Flags {
			for _, n := range f.Names() {
				if recipeSets[n] || reg != nil && reg.Param(n) != nil {
					continue
				}
				kind, def, ok := pipeline.StepOption(name, n)
				if !ok {
					t.Errorf("%s --%s: a recipe step has no such option", name, n)
					continue
				}
				var wantKind, wantDef string
				switch x := f.(type) {
				case *cli.StringFlag:
					wantKind, wantDef = "string", x.Value
				case *cli.BoolFlag:
					wantKind, wantDef = "bool", ""
					if x.Value {
						wantDef = "true"
					}
				case *cli.IntFlag:
					wantKind, wantDef = "int", ""
					if x.Value != 0 {
						wantDef = x.GetDefaultText()
					}
				case *cli.Int64Flag:
					wantKind, wantDef = "int", ""
					if x.Value != 0 {
						wantDef = x.GetDefaultText()
					}
				case *cli.Float64Flag:
					wantKind, wantDef = "float", x.GetDefaultText()
				default:
					t.Errorf("%s --%s: flag type %T", name, n, f)
					continue
				}
				if kind != wantKind || def != wantDef {
					t.Errorf("%s --%s: a step reads %s %q, the command line %s %q", name, n, kind, def, wantKind, wantDef)
				}
			}
		}
	}
}
