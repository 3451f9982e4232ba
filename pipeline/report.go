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
	fmt.Fprintf(&b, "\n### Per-layer %s search (%s levels)\n\n", r.Space, r.Method)
	if r.Space == SpaceSparsityBits {
		fmt.Fprintf(&b, "Targets fraction of zeros %.4f and mean bits per weight %.4f over %d weights (achieved %.4f and %.4f exactly in every allocation; each weight has a sparsity and a bits entry), bits ladder %v, ",
			r.Target, r.TargetBits, r.TotalWeights, r.Achieved, r.AchievedBits, r.Ladder)
	} else {
		fmt.Fprintf(&b, "Target %s %.4f over %d weights (achieved %.4f exactly in every allocation), ", targetUnit(r.Space), r.Target, r.TotalWeights, r.Achieved)
	}
	switch {
	case r.Space == SpaceDrop:
		fmt.Fprintf(&b, "keep/drop per block")
	case r.Ladder != nil && r.Space == SpaceBits:
		fmt.Fprintf(&b, "bits ladder %v", r.Ladder)
	default:
		fmt.Fprintf(&b, "±%d levels", r.Levels)
	}
	fmt.Fprintf(&b, ", %d switch groups", r.Groups)
	if r.Step > 0 {
		fmt.Fprintf(&b, ", step %d weights", r.Step)
	}
	fmt.Fprintf(&b, ", %d calibration samples; levels and baselines %.1f s; search from the %s allocation: %d evaluations in %.1f s (%.1f candidates/s).\n\n",
		r.Samples, r.PrepSeconds, r.Start, r.Evaluations, r.Seconds, r.CandidatesPS)
	fmt.Fprintf(&b, "| allocation | %s |\n|---|---|\n", lossName(r.Fitness))
	for _, a := range []Allocation{r.Uniform, r.Heuristic, r.Searched} {
		fmt.Fprintf(&b, "| %s | %.6g |\n", a.Name, a.Loss)
	}
	fmt.Fprintf(&b, "\n| layer | op | params | %s | %s | searched |\n|---|---|---|---|---|---|\n", r.Uniform.Name, r.Heuristic.Name)
	for i, l := range r.Searched.Layers {
		fmt.Fprintf(&b, "| %s | %s | %d | %s | %s | %s |\n", l.Name, l.Op, l.Params,
			levelText(r.Space, r.Uniform.Layers[i]), levelText(r.Space, r.Heuristic.Layers[i]), levelText(r.Space, l))
	}
	return b.String()
}

func targetUnit(space string) string {
	switch space {
	case SpaceRank:
		return "fraction of parameters kept"
	case SpaceBits:
		return "mean bits per weight"
	case SpaceDrop:
		return "residual blocks dropped"
	}
	return "fraction of zeros"
}

func lossName(fitness string) string {
	switch fitness {
	case FitnessMSE:
		return "MSE(dense, candidate)"
	case FitnessCosine:
		return "1 − cosine(dense, candidate)"
	}
	return "KL(dense‖candidate)"
}

func levelText(space string, l LayerChoice) string {
	if l.Space != "" {
		space = l.Space
	}
	switch space {
	case SpaceRank:
		return fmt.Sprintf("r=%d (%.3f)", l.Value, l.Fraction)
	case SpaceBits:
		return fmt.Sprintf("%d bits", l.Value)
	case SpaceDrop:
		if l.Value == 1 {
			return "drop"
		}
		return "keep"
	}
	return fmt.Sprintf("%.3f", l.Fraction)
}

// PlotSearch writes search_fitness.png (parent fitness per generation) and
// search_levels.png (per-layer level of each allocation: zero fraction,
// fraction of parameters kept, or bits) into dir.
func PlotSearch(dir string, r *SearchReport) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	p := plot.New()
	p.Title.Text = "EvoPress search: parent fitness"
	p.X.Label.Text = "generation"
	p.Y.Label.Text = lossName(r.Fitness) + " on the stage sample"
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
	q.Title.Text = "Per-layer " + r.Space
	q.Y.Label.Text = targetUnit(r.Space)
	w := vg.Points(8)
	colors := []color.Color{color.RGBA{120, 120, 120, 255}, color.RGBA{70, 130, 180, 255}, color.RGBA{200, 60, 40, 255}}
	var names []string
	for k, a := range []Allocation{r.Uniform, r.Heuristic, r.Searched} {
		vals := make(plotter.Values, len(a.Layers))
		for i, l := range a.Layers {
			vals[i] = l.Fraction
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
	if r.Space == SpaceBits || r.Space == SpaceSparsityBits {
		q.Y.Max = 9
	}
	return q.Save(7*vg.Inch, 4*vg.Inch, filepath.Join(dir, "search_levels.png"))
}

// PlotRecipe writes a PNG of accuracy (or, without labels, agreement)
// against model bytes for the steps of a recipe run.
func PlotRecipe(path string, rep *RecipeReport) error {
	var pts plotter.XYs
	var labels []string
	metric := "accuracy"
	for _, s := range rep.Steps {
		m, _ := s.Result["metrics"].(map[string]any)
		if _, ok := m["accuracy"]; !ok && m != nil {
			metric = "agreement"
		}
	}
	for _, s := range rep.Steps {
		m, _ := s.Result["metrics"].(map[string]any)
		y, ok1 := m[metric].(float64)
		x, ok2 := s.Result["bytes"].(float64)
		if !ok1 || !ok2 || x <= 0 {
			continue
		}
		pts = append(pts, plotter.XY{X: x / 1024, Y: y})
		labels = append(labels, s.Name)
	}
	if len(pts) == 0 {
		return nil
	}
	p := plot.New()
	p.Title.Text = "Recipe " + rep.Recipe + ": " + metric + " against size"
	p.X.Label.Text = "model size (KiB)"
	p.Y.Label.Text = metric
	line, points, err := plotter.NewLinePoints(pts)
	if err != nil {
		return err
	}
	lbl, err := plotter.NewLabels(plotter.XYLabels{XYs: pts, Labels: labels})
	if err != nil {
		return err
	}
	p.Add(line, points, lbl)
	return p.Save(7*vg.Inch, 4*vg.Inch, path)
}
