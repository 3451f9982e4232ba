package main

import (
	"errors"
	"regexp"
	"strings"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/pipeline"
)

// The library's errors speak its own words: a declared parameter is "the
// NAME parameter", an input is an option field ("Options.Calibration"),
// a process-level choice is left to "the program that runs" a recipe or
// config. This file phrases them as the command line's flags.

// paramMention matches how the library names one of its declared
// parameters in an error or a parameter's doc: "the damp parameter". A
// parameter's name is its flag's name (transform.Param), so the command
// line rewrites exactly this form into the flag.
var paramMention = regexp.MustCompile(`\bthe ([a-z][a-z0-9]*(?:-[a-z0-9]+)*) parameter\b`)

// paramNames are the names of every declared parameter of every
// registered command (pipeline.Commands).
var paramNames = func() map[string]bool {
	names := map[string]bool{}
	for _, c := range pipeline.Commands {
		for _, p := range c.Params() {
			names[p.Name] = true
		}
	}
	return names
}()

// processFlags phrases the library's process-level choices (recipes and
// merge configs may not make them) as the flags that make them; they hold
// for every command, run included.
var processFlags = strings.NewReplacer(
	"the program that runs the recipe passes the library's path", "pass --ort-lib on the command line",
	"the program that runs the config passes the library's path", "pass --ort-lib on the command line",
	"the program that runs the config sets it", "pass --threads on the command line",
)

// fieldFlags are the library's option fields that its messages name, with
// the flag that gives the same input.
var fieldFlags = strings.NewReplacer(
	"(Options.Calibration)", "(--calib)",
	"(Options.Stats)", "(--calib)",
	"(Inputs.Fishers)", "(--fisher F1,F2,...)",
	"EvalOptions.Outputs", "--output-name",
	"LevelSearch.Outputs", "--output-name",
)

// fieldKeys are the same fields as a recipe step's keys.
var fieldKeys = strings.NewReplacer(
	"(Options.Calibration)", "(calib)",
	"(Options.Stats)", "(calib)",
	"(Inputs.Fishers)", "(fisher)",
	"EvalOptions.Outputs", "output-name",
	"LevelSearch.Outputs", "output-name",
)

// flagWords phrases a library text in the command line's words: "the NAME
// parameter" becomes "--NAME" when NAME is a declared parameter (and so a
// flag), an option field in fieldFlags becomes its flag and a
// process-level choice its flag; any other text is left as it is.
func flagWords(s string) string {
	s = fieldFlags.Replace(processFlags.Replace(s))
	return paramMention.ReplaceAllStringFunc(s, func(m string) string {
		name := paramMention.FindStringSubmatch(m)[1]
		if !paramNames[name] {
			return m
		}
		return "--" + name
	})
}

// recipeWords phrases a library text for `run`, whose steps are recipe
// keys: parameters keep the library's words (a recipe key is the
// parameter's name), option fields become their keys, and process-level
// choices the flags of run.
func recipeWords(s string) string {
	return fieldKeys.Replace(processFlags.Replace(s))
}

// flagHints are the flags that give what a library error says is missing,
// by the sentinel the error wraps.
var flagHints = []struct {
	err  error
	hint string
}{
	{evalharness.ErrNeedsReference, "--ref REF.onnx"},
}

// cliWords phrases a library error in the command line's words: words
// (flagWords, or recipeWords for run) on its text, then the flag that
// supplies what the error says is missing.
func cliWords(err error, words func(string) string) string {
	msg := words(err.Error())
	for _, h := range flagHints {
		if errors.Is(err, h.err) && !strings.Contains(msg, h.hint) {
			msg += " (" + h.hint + ")"
		}
	}
	return msg
}
