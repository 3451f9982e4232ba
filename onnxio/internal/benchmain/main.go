// Command benchmain measures onnxio's Load + Save of a large model with
// external data against a plain copy of the same files, and the peak RSS of
// each, in separate processes (so one phase's memory does not hide
// another's):
//
//	go run ./onnxio/internal/benchmain -layers 24 -d 1024   # 1.2 GB, BERT-large shaped
//
// It generates the model with onnxio into -dir (default: a temporary folder,
// removed afterwards), then runs -reps rounds of: copy (io.Copy between files
// + fsync), load+save (Save with external data, tensors unchanged), and
// load+save with an identity Transform (every tensor read into memory). It
// prints a Markdown table of the best time of each, MB/s, the ratio to the
// copy and the peak RSS. The phase order rotates from round to round. With
// -auto it also measures Save with default options (ExternalAuto), which
// writes a model under 1.9 GB inline.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/onnxpost/onnxpost/onnxio"
	"github.com/onnxpost/onnxpost/onnxio/internal/benchgen"
)

func main() {
	layers := flag.Int("layers", 24, "transformer layers")
	d := flag.Int("d", 1024, "hidden size (feed-forward 4·d)")
	dir := flag.String("dir", "", "work folder (default: a new temporary folder, removed at the end)")
	reps := flag.Int("reps", 3, "rounds; the best time of each phase is reported")
	auto := flag.Bool("auto", false, "also measure Save with default options (ExternalAuto: inline below 1.9 GB)")
	phase := flag.String("phase", "", "internal: run one phase in this process")
	src := flag.String("src", "", "internal: source model")
	dst := flag.String("dst", "", "internal: destination folder")
	flag.Parse()
	s := benchgen.Shape{Layers: *layers, D: *d}
	if *phase != "" {
		if err := runPhase(*phase, s, *src, *dst); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	if err := drive(s, *dir, *reps, *auto); err != nil {
		fmt.Fprintln(os.Stderr, "benchmain:", err)
		os.Exit(1)
	}
}

func runPhase(phase string, s benchgen.Shape, src, dst string) error {
	switch phase {
	case "gen":
		_, err := benchgen.Generate(dst, s, 1)
		return err
	case "copy":
		_, err := benchgen.CopyModel(src, dst)
		return err
	case "loadsave":
		return benchgen.LoadSave(src, filepath.Join(dst, "model.onnx"), false)
	case "loadsave-transform":
		return benchgen.LoadSave(src, filepath.Join(dst, "model.onnx"), true)
	case "loadsave-auto":
		return benchgen.LoadSaveDefault(src, filepath.Join(dst, "model.onnx"))
	}
	return fmt.Errorf("unknown phase %q", phase)
}

type result struct {
	best   time.Duration
	maxRSS int64 // bytes
}

// child runs one phase in a new process and returns its wall time and peak RSS.
func child(phase string, s benchgen.Shape, src, dst string) (time.Duration, int64, error) {
	cmd := exec.Command(os.Args[0], "-phase", phase, "-layers", fmt.Sprint(s.Layers), "-d", fmt.Sprint(s.D), "-src", src, "-dst", dst)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	t0 := time.Now()
	if err := cmd.Run(); err != nil {
		return 0, 0, fmt.Errorf("%s: %w", phase, err)
	}
	el := time.Since(t0)
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	return el, ru.Maxrss * 1024, nil
}

func drive(s benchgen.Shape, dir string, reps int, auto bool) error {
	if dir == "" {
		d, err := os.MkdirTemp("", "onnxio-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	srcDir := filepath.Join(dir, "src")
	if err := os.MkdirAll(srcDir, 0o755); err != nil {
		return err
	}
	genT, genRSS, err := child("gen", s, "", srcDir)
	if err != nil {
		return err
	}
	src := filepath.Join(srcDir, "model.onnx")
	total, err := onnxio.DiskSize(src)
	if err != nil {
		return err
	}
	ms, _ := os.Stat(src)
	dataSize := total - ms.Size()
	phases := []string{"copy", "loadsave", "loadsave-transform"}
	if auto {
		phases = append(phases, "loadsave-auto")
	}
	res := map[string]*result{}
	for r := 0; r < reps; r++ {
		for k := range phases {
			p := phases[(k+r)%len(phases)] // rotate, so no phase always follows the same one
			out := filepath.Join(dir, p)
			os.RemoveAll(out)
			if err := os.MkdirAll(out, 0o755); err != nil {
				return err
			}
			el, rss, err := child(p, s, src, out)
			if err != nil {
				return err
			}
			if p != "copy" && p != "loadsave-auto" {
				on, err := onnxio.DiskSize(filepath.Join(out, "model.onnx"))
				om, _ := os.Stat(filepath.Join(out, "model.onnx"))
				if err != nil || om == nil || on-om.Size() != dataSize {
					return fmt.Errorf("%s wrote %v bytes of data (%v), want %d", p, on, err, dataSize)
				}
			}
			os.RemoveAll(out)
			if res[p] == nil || el < res[p].best {
				res[p] = &result{best: el}
			}
			if rss > res[p].maxRSS {
				res[p].maxRSS = rss
			}
		}
	}
	mb := float64(total) / 1e6
	fmt.Printf("model: %d layers, d=%d, %d tensors, %.0f MB (data %d bytes); generated in %.1f s (peak RSS %.0f MB)\n",
		s.Layers, s.D, 16*s.Layers, mb, dataSize, genT.Seconds(), float64(genRSS)/1e6)
	fmt.Printf("machine: %s/%s, %d CPUs (GOMAXPROCS %d), %s; best of %d\n\n", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), reps)
	fmt.Println("| phase | time | MB/s | vs copy (speed) | peak RSS | RSS / model size |")
	fmt.Println("|---|---|---|---|---|---|")
	base := res["copy"].best
	for _, p := range phases {
		r := res[p]
		fmt.Printf("| %s | %.2f s | %.0f | %.2f× | %.0f MB | %.3f |\n", p, r.best.Seconds(), mb/r.best.Seconds(),
			base.Seconds()/r.best.Seconds(), float64(r.maxRSS)/1e6, float64(r.maxRSS)/float64(total))
	}
	return nil
}
