package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/onnxpost/onnxpost/internal/display"
	"github.com/onnxpost/onnxpost/onnxio"
)

func init() {
	register(&cli.Command{
		Name:      "inspect",
		Usage:     "show a model's opsets, inputs, outputs, ops and parameters",
		ArgsUsage: "MODEL",
		Description: `Prints the IR version, opset imports, inputs and outputs with shapes,
an op histogram, and for every parameter tensor: its name, consuming op,
role (MatMul.B, Gemm.B, Conv.W, bias, norm, embedding, ...), shape, dtype,
element count and fraction of zeros; then totals.

  onnxpost inspect model.onnx
  onnxpost inspect model.onnx --json | jq '.weights[] | select(.role=="Conv.W")'`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print JSON (keys as in docs/ARCHITECTURE.md §4)"},
		},
		Action: inspectAction,
	})
	register(&cli.Command{
		Name:      "convert",
		Usage:     "re-save a model inline or with external data",
		ArgsUsage: "MODEL",
		Description: `Loads MODEL (checking it) and writes it to OUT atomically, with every
tensor inline (--inline) or tensors of 1 KiB or more in OUT.data
(--external-data; weights held in Constant nodes become initializers so
that they go there too). Without either flag, the output keeps external data when
the input has it, and uses it when the model would pass protobuf's 2 GB limit.

  onnxpost convert big.onnx -o big-ext.onnx --external-data`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "o", Aliases: []string{"output"}, Usage: "output `PATH`", Required: true},
			&cli.BoolFlag{Name: "external-data", Usage: "store tensors in OUT.data"},
			&cli.BoolFlag{Name: "inline", Usage: "store every tensor inside OUT"},
		},
		Action: convertAction,
	})
}

// inspectReport is the JSON of `inspect --json`.
type inspectReport struct {
	IRVersion int64             `json:"ir_version"`
	Producer  string            `json:"producer,omitempty"`
	Opsets    map[string]int64  `json:"opsets"`
	Inputs    []inspectValue    `json:"inputs"`
	Outputs   []inspectValue    `json:"outputs"`
	Ops       map[string]int    `json:"ops"`
	Weights   []inspectWeight   `json:"weights"`
	Params    int64             `json:"params"`
	Bytes     int64             `json:"bytes"`
	Metadata  map[string]string `json:"metadata,omitempty"`
}

type inspectValue struct {
	Name  string `json:"name"`
	DType string `json:"dtype"`
	Shape []any  `json:"shape"`
}

type inspectWeight struct {
	Name         string   `json:"name"`
	Op           string   `json:"op"`
	Role         string   `json:"role"`
	Shape        []int64  `json:"shape"`
	DType        string   `json:"dtype"`
	Params       int64    `json:"params"`
	ZeroFraction float64  `json:"zero_fraction"`
	Via          []string `json:"via,omitempty"`
	OutAxis      int      `json:"out_axis"`
	InAxis       int      `json:"in_axis"`
	Reduction    int64    `json:"reduction_size,omitempty"`
	TransB       bool     `json:"trans_b,omitempty"`
	Group        int64    `json:"group,omitempty"`
	// Where says where the tensor lives when it is not a dense tensor of
	// the main graph (onnxio.Weight.Special): in or read inside a
	// subgraph, a sparse initializer, already quantized.
	Where     string `json:"where,omitempty"`
	Constant  bool   `json:"constant,omitempty"`
	Quantized bool   `json:"quantized,omitempty"`
}

func valueJSON(v onnxio.ValueInfo) inspectValue {
	out := inspectValue{Name: v.Name, DType: v.DType.String(), Shape: []any{}}
	for _, d := range v.Shape {
		switch {
		case d.Param != "":
			out.Shape = append(out.Shape, d.Param)
		case d.Value >= 0:
			out.Shape = append(out.Shape, d.Value)
		default:
			out.Shape = append(out.Shape, nil)
		}
	}
	return out
}

func buildInspect(m *onnxio.Model) (*inspectReport, error) {
	r := &inspectReport{
		IRVersion: m.IRVersion(), Producer: m.ProducerName(), Opsets: m.Opsets(), Ops: m.OpCounts(),
		Inputs: []inspectValue{}, Outputs: []inspectValue{}, Weights: []inspectWeight{},
	}
	if md := m.Metadata(); len(md) > 0 {
		r.Metadata = md
	}
	for _, v := range m.Inputs() {
		r.Inputs = append(r.Inputs, valueJSON(v))
	}
	for _, v := range m.Outputs() {
		r.Outputs = append(r.Outputs, valueJSON(v))
	}
	ws, err := m.AllWeights()
	if err != nil {
		return nil, err
	}
	for _, w := range ws {
		zf := 0.0
		t, err := m.WeightTensor(w)
		if err != nil {
			return nil, err
		}
		if t != nil {
			zf = t.ZeroFraction()
		}
		op := w.Op
		if op == "" {
			op = "(unused)"
		}
		r.Weights = append(r.Weights, inspectWeight{
			Name: w.Name, Op: op, Role: w.Role, Shape: w.Shape, DType: w.DType.String(),
			Params: w.Params(), ZeroFraction: zf, Via: w.Via,
			OutAxis: w.OutAxis, InAxis: w.InAxis, Reduction: w.ReductionSize(), TransB: w.TransB, Group: w.Group,
			Where: w.Special(), Constant: w.Constant, Quantized: w.Quantized,
		})
		r.Params += w.Params()
		r.Bytes += w.DType.ByteSize(w.Params())
	}
	return r, nil
}

func inspectAction(c *cli.Context) error {
	if c.NArg() != 1 {
		return usagef("inspect takes one MODEL argument")
	}
	m, err := onnxio.Load(c.Args().First())
	if err != nil {
		return err
	}
	r, err := buildInspect(m)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	printInspect(os.Stdout, c.Args().First(), r)
	return nil
}

// printInspect writes the human-readable inspection. Every string that
// comes from the model (names, op types, domains, dim params, producer)
// goes through displayName: a model is untrusted input and its names must
// not move the cursor, clear the terminal or fake table rows.
func printInspect(w io.Writer, path string, r *inspectReport) {
	fmt.Fprintf(w, "model      %s\n", displayName(path))
	fmt.Fprintf(w, "ir_version %d   producer %s\n", r.IRVersion, displayName(r.Producer))
	var ops []string
	for d, v := range r.Opsets {
		if d == "" {
			d = "ai.onnx"
		}
		ops = append(ops, fmt.Sprintf("%s:%d", displayName(d), v))
	}
	sort.Strings(ops)
	fmt.Fprintf(w, "opsets     %s\n", strings.Join(ops, " "))
	for _, v := range r.Inputs {
		fmt.Fprintf(w, "input      %s %s %s\n", displayName(v.Name), v.DType, displayShape(v.Shape))
	}
	for _, v := range r.Outputs {
		fmt.Fprintf(w, "output     %s %s %s\n", displayName(v.Name), v.DType, displayShape(v.Shape))
	}
	var hist []string
	for op, n := range r.Ops {
		hist = append(hist, fmt.Sprintf("%s×%d", displayName(op), n))
	}
	sort.Strings(hist)
	fmt.Fprintf(w, "ops        %s\n\n", strings.Join(hist, " "))
	tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tOP\tROLE\tSHAPE\tDTYPE\tPARAMS\tZEROS\tWHERE")
	for _, x := range r.Weights {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\t%d\t%.1f%%\t%s\n", displayName(x.Name), displayName(x.Op), displayName(x.Role), x.Shape, x.DType, x.Params, 100*x.ZeroFraction, whereCell(x.Where))
	}
	tw.Flush()
	fmt.Fprintf(w, "\n%d parameters in %d tensors, %d bytes\n", r.Params, len(r.Weights), r.Bytes)
}

// displayName returns s as it is when it is plain printable text, else
// quoted in Go syntax (strconv.Quote): a name that is empty, not valid
// UTF-8, or holds a space, a control or format character (escape
// sequences, newlines, tabs, bidirectional overrides), a quote, a
// backslash or a "|" is shown quoted and escaped.
// whereCell renders onnxio.Weight.Special for the table: "main" for a
// plain weight, else its words each through displayName (the subgraph path
// comes from the model).
func whereCell(s string) string {
	if s == "" {
		return "main"
	}
	words := strings.Fields(s)
	for i, w := range words {
		words[i] = displayName(w)
	}
	return strings.Join(words, " ")
}

// displayName quotes a model-supplied name that is not plain printable
// text (display.Name).
func displayName(s string) string { return display.Name(s) }

// displayShape formats a shape whose symbolic dims come from the model.
func displayShape(shape []any) string {
	parts := make([]string, len(shape))
	for i, d := range shape {
		switch x := d.(type) {
		case string:
			parts[i] = displayName(x)
		case nil:
			parts[i] = "?"
		default:
			parts[i] = fmt.Sprint(x)
		}
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func convertAction(c *cli.Context) error {
	if c.NArg() != 1 {
		return usagef("convert takes one MODEL argument")
	}
	if c.Bool("external-data") && c.Bool("inline") {
		return usagef("--external-data and --inline exclude each other")
	}
	m, err := onnxio.Load(c.Args().First())
	if err != nil {
		return err
	}
	opts := &onnxio.SaveOptions{}
	switch {
	case c.Bool("external-data"):
		opts.External = onnxio.ExternalAlways
		// weights held in Constant nodes (paddle2onnx exports) go to the
		// data file too: as initializers of the same name
		n, err := m.FoldConstantWeights()
		if err != nil {
			return err
		}
		if n > 0 {
			fmt.Fprintf(os.Stderr, "convert: %d Constant nodes became initializers (large ones are stored in the data file)\n", n)
		}
	case c.Bool("inline"):
		opts.External = onnxio.ExternalNever
	}
	return m.Save(c.String("o"), opts)
}

// displayNames joins names for terminal output, each escaped as by
// displayName; "" for none.
func displayNames(names []string) string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = displayName(n)
	}
	return strings.Join(out, ",")
}
