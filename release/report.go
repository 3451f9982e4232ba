package release

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/internal/jsonout"
	"github.com/onnxpost/onnxpost/internal/safefs"
	"github.com/onnxpost/onnxpost/onnxio"
)

// Report is the outcome of a commit. Its JSON (Report.JSON) has the keys of
// the evaluation result ("model", "samples", "metrics", "reference",
// "gate", "params", "bytes", "output" for the measured model output,
// "outputs", "stats", "nonfinite", ...), then "command", "output"
// overwritten with the path written ("" when rejected),
// "rejected_output" when a rejected candidate was kept, and the Extra keys.
type Report struct {
	// Command names the step (the JSON's "command").
	Command string
	// Result is the evaluation (Params and Bytes filled in).
	Result *evalharness.Result
	// Output is the destination path.
	Output string
	// Written is the path written: Output when the gate passed, the
	// keep-rejected path when it failed and one was given, else "".
	Written string
	// Passed reports whether the gate passed (true without a gate).
	Passed bool
	// Extra holds the transform's own keys.
	Extra map[string]any
	// Saved is what the save wrote (nil when nothing was written).
	Saved *onnxio.Saved
}

// MarshalJSON returns the report's JSON object (compact).
func (r *Report) MarshalJSON() ([]byte, error) {
	m, err := r.fields()
	if err != nil {
		return nil, err
	}
	return json.Marshal(jsonout.Safe(m))
}

// JSON returns the report as the CLI prints and writes it: indented, "<"
// and ">" unescaped, NaN and ±Inf as null, ending with a newline.
func (r *Report) JSON() ([]byte, error) {
	m, err := r.fields()
	if err != nil {
		return nil, err
	}
	return jsonout.Marshal(m)
}

// Markdown renders the report as Markdown (see Markdown).
func (r *Report) Markdown() (string, error) {
	doc, err := r.JSON()
	if err != nil {
		return "", err
	}
	return Markdown(doc)
}

// fields merges the evaluation result, the command, the paths and the
// extra keys into one JSON object.
func (r *Report) fields() (map[string]any, error) {
	res := r.Result
	if res == nil {
		res = &evalharness.Result{Metrics: map[string]float64{}}
	}
	b, err := json.Marshal(res)
	if err != nil {
		return nil, err
	}
	m := map[string]any{}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	if _, ok := m["params"]; !ok {
		m["params"] = res.Params
	}
	if _, ok := m["bytes"]; !ok {
		m["bytes"] = res.Bytes
	}
	for k, v := range r.Extra {
		if _, taken := m[k]; taken {
			k = r.Command + "_" + k
		}
		m[k] = v
	}
	m["command"] = r.Command
	if r.Passed {
		m["output"] = r.Written
	} else {
		m["output"] = ""
		if r.Written != "" {
			m["rejected_output"] = r.Written
		}
	}
	return m, nil
}

// PendingReport is a report whose files (JSON and Markdown) are prepared
// as temporary files beside their destinations before anything else is
// committed, and renamed into place by Commit. A nil *PendingReport (no
// report path) commits nothing.
type PendingReport struct {
	json, md *safefs.Pending
}

// MarkdownPath returns the Markdown report's path for a JSON report at
// path: the extension replaced by .md (path+".md" when it already is .md).
func MarkdownPath(path string) string {
	md := strings.TrimSuffix(path, filepath.Ext(path)) + ".md"
	if md == path {
		md = path + ".md"
	}
	return md
}

// PrepareReport creates the temporary files of the report at path and of
// its Markdown sibling (MarkdownPath); it fails when either cannot be
// written. path "" gives a nil report.
func PrepareReport(path string) (*PendingReport, error) {
	if path == "" {
		return nil, nil
	}
	j, err := safefs.Prepare(path)
	if err != nil {
		return nil, fmt.Errorf("writing the report: %w", err)
	}
	md, err := safefs.Prepare(MarkdownPath(path))
	if err != nil {
		j.Abort()
		return nil, fmt.Errorf("writing the report: %w", err)
	}
	return &PendingReport{json: j, md: md}, nil
}

// Commit renders rep (JSON and Markdown) and renames both files into
// place.
func (p *PendingReport) Commit(rep *Report) error {
	if p == nil {
		return nil
	}
	doc, err := rep.JSON()
	if err != nil {
		return err
	}
	return p.CommitJSON(doc)
}

// CommitJSON is Commit for a report already rendered as JSON.
func (p *PendingReport) CommitJSON(doc []byte) error {
	if p == nil {
		return nil
	}
	md, err := Markdown(doc)
	if err != nil {
		return fmt.Errorf("rendering the report: %w", err)
	}
	if err := p.json.Commit(doc); err != nil {
		return fmt.Errorf("writing the report: %w", err)
	}
	if err := p.md.Commit([]byte(md)); err != nil {
		return fmt.Errorf("writing the report: %w", err)
	}
	return nil
}

// Abort removes whatever Commit did not rename into place; it can be
// deferred.
func (p *PendingReport) Abort() {
	if p != nil {
		p.json.Abort()
		p.md.Abort()
	}
}
