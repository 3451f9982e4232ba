// Package release is the last step of every onnxpost transform: evaluate
// the candidate (and its reference) on data, check the accuracy gate, write
// the model atomically only when the gate passes (or keep the rejected
// candidate elsewhere), record provenance in the model's metadata, and
// write the report, as JSON and Markdown, prepared before the model is
// committed.
//
// Commit is that step with the CLI's exact semantics: every transforming
// command of cmd/onnxpost ends with it, a recipe run (pipeline.Recipe.Run)
// ends with it, and a Go program that merges, prunes or quantizes with the
// library ends with it too, so the three write the same bytes for the same
// chain. The report is a typed value (Report) whose JSON has the keys the
// CLI has always printed (see docs/ARCHITECTURE.md).
//
// Why a package of its own rather than a part of pipeline: pipeline holds
// the searches and the recipe runner, which call Commit; release depends
// only on onnxio and evalharness, so a program that only gates a model
// does not link the search machinery, and recipes can call it without an
// import cycle.
package release
