package pipeline

import (
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// SearchMarkdown renders a search report as a Markdown table.
func SearchMarkdown(r *SearchReport) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n### Per-layer sparsity search\n\n")
	fmt.Fprintf(&b, "Target %.4f of %d weights (achieved %.4f exactly in every allocation), step %d weights, ±%d levels, %d calibration samples, %d evaluations in %.1f s (%.0f candidates/s).\n\n",
		r.Target, r.TotalWeights, r.Achieved, r.Step, r.Levels, r.Samples, r.Evaluations, r.Seconds, r.CandidatesPS)
	fmt.Fprintf(&b, "| allocation | KL(dense‖candidate) |\n|---|---|\n")
	for _, a := range []Allocation{r.Uniform, r.Heuristic, r.Searched} {
		fmt.Fprintf(&b, "| %s | %.5f |\n", a.Name, a.KL)
	}
	fmt.Fprintf(&b, "\n| layer | op | params | uniform | per-layer-error | searched |\n|---|---|---|---|---|---|\n")
	for i, l := range r.Searched.Layers {
		fmt.Fprintf(&b, "| %s | %s | %d | %.3f | %.3f | %.3f |\n", l.Name, l.Op, l.Params,
			r.Uniform.Layers[i].Sparsity, r.Heuristic.Layers[i].Sparsity, l.Sparsity)
	}
	return b.String()
}

// PlotSearch writes search_fitness.png (parent fitness per generation) and
// search_levels.png (per-layer sparsity of each allocation) into dir.
func PlotSearch(dir string, r *SearchReport) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	p := plot.New()
	p.Title.Text = "EvoPress search: parent fitness"
	p.X.Label.Text = "generation"
	p.Y.Label.Text = "KL(dense ‖ candidate) on the stage sample"
	pts := make(plotter.XYs, len(r.History))
	for i, f := range r.History {
		pts[i] = plotter.XY{X: float64(i + 1), Y: f}
	}
	if len(pts) > 0 {
		l, err := plotter.NewLine(pts)
		if err != nil {
			return err
		}
		p.Add(l)
	}
	if err := p.Save(6*vg.Inch, 4*vg.Inch, filepath.Join(dir, "search_fitness.png")); err != nil {
		return err
	}

	q := plot.New()
	q.Title.Text = "Per-layer sparsity"
	q.Y.Label.Text = "fraction of zeros"
	w := vg.Points(8)
	colors := []color.Color{color.RGBA{120, 120, 120, 255}, color.RGBA{70, 130, 180, 255}, color.RGBA{200, 60, 40, 255}}
	var names []string
	for k, a := range []Allocation{r.Uniform, r.Heuristic, r.Searched} {
		vals := make(plotter.Values, len(a.Layers))
		for i, l := range a.Layers {
			vals[i] = l.Sparsity
		}
		bars, err := plotter.NewBarChart(vals, w)
		if err != nil {
			return err
		}
		bars.Offset = vg.Length(k-1) * w
		bars.Color = colors[k]
		bars.LineStyle.Width = 0
		q.Add(bars)
		q.Legend.Add(a.Name, bars)
	}
	for i := range r.Searched.Layers {
		names = append(names, fmt.Sprint(i))
	}
	q.NominalX(names...)
	q.X.Label.Text = "layer (graph order)"
	q.Legend.Top = true
	q.Y.Min, q.Y.Max = 0, 1.15
	return q.Save(7*vg.Inch, 4*vg.Inch, filepath.Join(dir, "search_levels.png"))
}
