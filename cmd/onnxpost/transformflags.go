package main

import (
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/onnxpost/onnxpost/pipeline"
	"github.com/onnxpost/onnxpost/transform"
)

// paramFlags derives the flags of a transforming command from its
// declared parameters (pipeline.Commands): name, type, default and usage
// all come from the declaration, so the command line's defaults are the
// library's. A parameter whose default differs between the command's
// transforms (quantize's symmetric) gets no flag default; paramArgs then
// leaves it to the chosen transform's.
func paramFlags(cmd *transform.Command) []cli.Flag {
	var out []cli.Flag
	for _, p := range cmd.Params() {
		out = append(out, paramFlag(p))
	}
	return out
}

func paramFlag(p *transform.Param) cli.Flag {
	switch p.Kind {
	case transform.Float:
		f := &cli.Float64Flag{Name: p.Name, Usage: flagWords(p.Doc)}
		if p.Default != "" {
			f.Value, _ = strconv.ParseFloat(p.Default, 64)
		}
		return f
	case transform.Int:
		f := &cli.IntFlag{Name: p.Name, Usage: flagWords(p.Doc)}
		if p.Default != "" {
			f.Value, _ = strconv.Atoi(p.Default)
		}
		return f
	case transform.Bool:
		f := &cli.BoolFlag{Name: p.Name, Usage: flagWords(p.Doc)}
		f.Value, _ = strconv.ParseBool(p.Default)
		return f
	case transform.List:
		if p.Repeated {
			return &cli.StringSliceFlag{Name: p.Name, Usage: flagWords(p.Doc)}
		}
	}
	return &cli.StringFlag{Name: p.Name, Value: p.Default, Usage: flagWords(p.Doc)}
}

// paramValues returns the declared parameters of cmd that the command
// line set, as text (pipeline.ParamValues).
func paramValues(c *cli.Context, cmd *transform.Command) map[string]any {
	return pipeline.ParamValues(c, cmd)
}

// checkParams validates the parameters the command line set through the
// command's declarations (the same check a recipe step gets); a bad value
// is a usage error (exit 2) naming the flag, the value and what is
// allowed.
func checkParams(c *cli.Context, cmd *transform.Command) (*transform.Transform, transform.Args, error) {
	t, args, err := cmd.Check(paramValues(c, cmd))
	if err != nil {
		var lines []string
		for _, l := range strings.Split(err.Error(), "\n") {
			lines = append(lines, strings.TrimPrefix(l, transform.ErrValue.Error()+": "))
		}
		return nil, nil, usageError{strings.Join(lines, "\n")}
	}
	return t, args, nil
}
