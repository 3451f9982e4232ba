package release

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Markdown renders the JSON result of a command (the report keys of docs/ARCHITECTURE.md
// keys plus the command's own) as Markdown: the output and gate, a table of
// the candidate's and the reference's metrics, the command's scalar
// settings, and a table for each list of records (e.g. per-layer reports).
func Markdown(doc []byte) (string, error) {
	var m map[string]any
	if err := json.Unmarshal(doc, &m); err != nil {
		return "", err
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "# onnxpost %v\n\n", m["command"])
	if out, _ := m["output"].(string); out != "" {
		fmt.Fprintf(&b, "Output: `%s`", out)
	} else if rej, _ := m["rejected_output"].(string); rej != "" {
		fmt.Fprintf(&b, "Output not written (gate failed); candidate kept at `%s`", rej)
	} else {
		fmt.Fprintf(&b, "Output not written")
	}
	fmt.Fprintf(&b, " — %s parameters, %s bytes.\n\n", cell(m["params"]), cell(m["bytes"]))
	if g, ok := m["gate"].(map[string]any); ok {
		fmt.Fprintf(&b, "Gate `%v`: **%s**\n\n", g["expr"], map[bool]string{true: "passed", false: "failed"}[g["passed"] == true])
	}
	metrics, _ := m["metrics"].(map[string]any)
	var refMetrics map[string]any
	if r, ok := m["reference"].(map[string]any); ok {
		refMetrics, _ = r["metrics"].(map[string]any)
	}
	if len(metrics) > 0 {
		fmt.Fprintf(&b, "Evaluated on %s samples.\n\n| metric | candidate | reference |\n|---|---|---|\n", cell(m["samples"]))
		for _, k := range slices.Sorted(maps.Keys(metrics)) {
			fmt.Fprintf(&b, "| %s | %s | %s |\n", k, cell(metrics[k]), cell(refMetrics[k]))
		}
		b.WriteString("\n")
	}
	skip := map[string]bool{"command": true, "output": true, "rejected_output": true, "params": true, "bytes": true,
		"gate": true, "metrics": true, "reference": true, "samples": true, "model": true}
	var scalars []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if skip[k] {
			continue
		}
		switch v := m[k].(type) {
		case []any:
			writeRecords(&b, k, v)
		case map[string]any:
			j, _ := json.MarshalIndent(v, "", "  ")
			if len(j) > 4000 {
				j = append(j[:4000], []byte("\n...")...)
			}
			fmt.Fprintf(&b, "## %s\n\n```json\n%s\n```\n\n", k, j)
		default:
			scalars = append(scalars, fmt.Sprintf("- %s: %s", k, cell(v)))
		}
	}
	if len(scalars) > 0 {
		fmt.Fprintf(&b, "## settings\n\n%s\n", strings.Join(scalars, "\n"))
	}
	return b.String(), nil
}

// writeRecords renders a list of JSON objects as a table (other lists as a
// line).
func writeRecords(b *bytes.Buffer, title string, list []any) {
	var cols []string
	seen := map[string]bool{}
	for _, e := range list {
		o, ok := e.(map[string]any)
		if !ok {
			parts := make([]string, len(list))
			for i, x := range list {
				parts[i] = cell(x)
			}
			fmt.Fprintf(b, "- %s: %s\n\n", title, strings.Join(parts, ", "))
			return
		}
		for _, k := range slices.Sorted(maps.Keys(o)) {
			if !seen[k] {
				seen[k] = true
				cols = append(cols, k)
			}
		}
	}
	if len(cols) == 0 {
		return
	}
	fmt.Fprintf(b, "## %s\n\n| %s |\n|%s\n", title, strings.Join(cols, " | "), strings.Repeat("---|", len(cols)))
	for _, e := range list {
		o := e.(map[string]any)
		row := make([]string, len(cols))
		for i, c := range cols {
			row[i] = cell(o[c])
		}
		fmt.Fprintf(b, "| %s |\n", strings.Join(row, " | "))
	}
	b.WriteString("\n")
}

// cell formats one JSON value for a table cell.
func cell(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case float64:
		if x == float64(int64(x)) && (x >= 1000 || x <= -1000 || x == 0 || x == 1) {
			return fmt.Sprintf("%d", int64(x))
		}
		return fmt.Sprintf("%.6g", x)
	case string:
		return strings.ReplaceAll(x, "|", "\\|")
	case []any, map[string]any:
		j, _ := json.Marshal(x)
		return strings.ReplaceAll(string(j), "|", "\\|")
	}
	return fmt.Sprint(v)
}
