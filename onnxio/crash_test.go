package onnxio

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	pb "github.com/onnxpost/onnxpost/onnxio/internal/onnxpb"
)

// Environment of the save helper: the test binary re-executed runs
// saveHelper instead of the tests.
const (
	helperEnv    = "ONNXIO_SAVE_HELPER" // output path
	helperIDEnv  = "ONNXIO_SAVE_HELPER_ID"
	markerKey    = "onnxio.test.marker"
	markerTensor = "W"
)

func TestMain(m *testing.M) {
	if out := os.Getenv(helperEnv); out != "" {
		id, _ := strconv.Atoi(os.Getenv(helperIDEnv))
		saveHelper(out, id)
		return
	}
	os.Exit(m.Run())
}

// markedModel returns a model whose tensor W (4 KB, so external with the
// default threshold) holds v everywhere and whose metadata says v.
func markedModel(v int) *Model {
	m := New("marked", 17)
	vals := make([]float32, 1024)
	for i := range vals {
		vals[i] = float32(v)
	}
	w, err := FromFloat32(markerTensor, Float, []int64{1024}, vals)
	if err != nil {
		panic(err)
	}
	if err := m.SetInitializer(w); err != nil {
		panic(err)
	}
	m.SetMetadata(markerKey, strconv.Itoa(v))
	return m
}

// saveHelper saves marked models over out until it is killed, printing a
// line after each save; values are id*1e6 + round, so every save is
// distinct. Most saves use external data, every fourth is inline.
func saveHelper(out string, id int) {
	w := bufio.NewWriter(os.Stdout)
	for i := 1; ; i++ {
		ext := ExternalAlways
		if i%4 == 0 {
			ext = ExternalNever
		}
		if err := markedModel(id*1_000_000+i).Save(out, &SaveOptions{External: ext}); err != nil {
			fmt.Fprintln(os.Stderr, "save:", err)
			os.Exit(1)
		}
		fmt.Fprintln(w, "saved", i)
		w.Flush()
	}
}

// checkMarked loads out and checks that its tensor agrees with its marker:
// the model and the data it reads come from the same save.
func checkMarked(t *testing.T, out string) int {
	t.Helper()
	m, err := Load(out)
	if err != nil {
		t.Fatalf("after the kill the output does not load: %v", err)
	}
	marker, err := strconv.Atoi(m.Metadata()[markerKey])
	if err != nil {
		t.Fatalf("marker %q: %v", m.Metadata()[markerKey], err)
	}
	w, err := m.Initializer(markerTensor)
	if err != nil {
		t.Fatalf("model of save %d: its tensor does not read: %v", marker, err)
	}
	v, _ := w.Float32()
	for _, x := range v {
		if x != float32(marker) {
			t.Fatalf("torn save: the model of save %d reads data of save %v", marker, x)
		}
	}
	return marker
}

type helper struct {
	cmd   *exec.Cmd
	lines *bufio.Scanner
}

func startHelper(t *testing.T, out string, id int) *helper {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+out, helperIDEnv+"="+strconv.Itoa(id))
	cmd.Stderr = os.Stderr
	r, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return &helper{cmd: cmd, lines: bufio.NewScanner(r)}
}

// waitSaves waits until the helper has reported n saves.
func (h *helper) waitSaves(t *testing.T, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if !h.lines.Scan() {
			t.Fatalf("save helper stopped: %v", h.lines.Err())
		}
	}
}

func (h *helper) kill() {
	h.cmd.Process.Signal(syscall.SIGKILL)
	h.cmd.Wait()
}

// TestSaveCrashConsistency kills a process that saves over an existing
// output, at random points of its saves, and checks after every kill that
// the output is one save's model with that save's data.
func TestSaveCrashConsistency(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "m.onnx")
	if err := markedModel(0).Save(out, &SaveOptions{External: ExternalAlways}); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(1))
	last, changed := 0, 0
	for round := 1; round <= 12; round++ {
		h := startHelper(t, out, round)
		h.waitSaves(t, 1+rng.Intn(3))
		time.Sleep(time.Duration(rng.Intn(3000)) * time.Microsecond) // a random point of a later save
		h.kill()
		if got := checkMarked(t, out); got != last {
			changed++
			last = got
		}
	}
	if changed == 0 {
		t.Fatal("no save ever completed")
	}
	assertNoStrayData(t, out, 12)
}

// TestSaveConcurrentWriters runs two processes saving to one output at the
// same time, kills both, and checks that the output is a whole save.
func TestSaveConcurrentWriters(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "m.onnx")
	if err := markedModel(0).Save(out, nil); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(2))
	for round := 1; round <= 4; round++ {
		a, b := startHelper(t, out, 2*round), startHelper(t, out, 2*round+1)
		var wg sync.WaitGroup
		for _, h := range []*helper{a, b} {
			wg.Add(1)
			go func(h *helper) {
				defer wg.Done()
				for h.lines.Scan() {
				}
			}(h)
		}
		// let both run over each other for a random while, then kill
		time.Sleep(time.Duration(50+rng.Intn(100)) * time.Millisecond)
		a.cmd.Process.Signal(syscall.SIGKILL)
		b.cmd.Process.Signal(syscall.SIGKILL)
		wg.Wait()
		a.cmd.Wait()
		b.cmd.Wait()
		checkMarked(t, out)
	}
}

// assertNoStrayData checks that at most max data files of saves to out are
// left beside it besides the one the output references (a kill between a
// data file's rename and the model's commit leaves one behind).
func assertNoStrayData(t *testing.T, out string, max int) {
	t.Helper()
	locs, err := DataFiles(out)
	if err != nil {
		t.Fatal(err)
	}
	all, _ := filepath.Glob(out + ".*.data")
	if len(all)-len(locs) > max {
		t.Errorf("%d data files beside %s, the model references %v", len(all), out, locs)
	}
}

func TestSaveRefusesBadOutputs(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skip("no FIFOs here:", err)
	}
	// sub.data: a file that a save to "sub" must not touch
	if err := os.WriteFile(sub+".data", []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	m := kitchenSink(t, fixtureOpts{hidden: 300})
	before := hashFiles(t, dir)
	for _, out := range []string{"", sub, sub + "/", fifo} {
		for _, ext := range []ExternalMode{ExternalNever, ExternalAlways} {
			err := m.Save(out, &SaveOptions{External: ext})
			if !errors.Is(err, ErrOutputPath) {
				t.Errorf("Save(%q): got %v, want ErrOutputPath", out, err)
			}
		}
	}
	sameHashes(t, "folder after refused saves", before, hashFiles(t, dir))
	if es, _ := os.ReadDir("."); len(es) > 0 {
		for _, e := range es {
			if strings.HasPrefix(e.Name(), ".onnxpost") || strings.HasSuffix(e.Name(), "..data") {
				t.Errorf("Save(\"\") left %s in the working folder", e.Name())
			}
		}
	}
}

// TestSaveFailureChangesNothing saves over an existing external output
// with a transform that fails part-way, and with a cancelled context
// (before the save and during it): the old output and its data stay as
// they were and no temporary file is left.
func TestSaveFailureChangesNothing(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "m.onnx")
	m := kitchenSink(t, fixtureOpts{hidden: 300})
	if err := m.Save(out, &SaveOptions{External: ExternalAlways}); err != nil {
		t.Fatal(err)
	}
	before := hashFiles(t, dir)
	boom := errors.New("boom")
	calls := 0
	failing := func(_ string, t *Tensor) (*Tensor, error) {
		if calls++; calls == 3 {
			return nil, boom
		}
		return t, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancelling := func(_ string, t *Tensor) (*Tensor, error) {
		cancel()
		return t, nil
	}
	done, stop := context.WithCancel(context.Background())
	stop()
	cases := []struct {
		name string
		o    SaveOptions
		want error
	}{
		{"transform error", SaveOptions{External: ExternalAlways, Transform: failing, Workers: 1}, boom},
		{"cancelled during", SaveOptions{External: ExternalAlways, Transform: cancelling, Workers: 1, Context: ctx}, context.Canceled},
		{"cancelled before", SaveOptions{External: ExternalNever, Context: done}, context.Canceled},
	}
	for _, c := range cases {
		if err := m.Save(out, &c.o); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
		sameHashes(t, c.name, before, hashFiles(t, dir))
	}
	assertNoTemp(t, dir)
}

// TestSaveRemovesOnlyItsOwnData: a save removes the data file of the save
// it replaced, never a hand-made data file that the replaced model read.
func TestSaveRemovesOnlyItsOwnData(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "m.onnx")
	m := kitchenSink(t, fixtureOpts{hidden: 300})
	if err := m.Save(out, &SaveOptions{External: ExternalAlways}); err != nil {
		t.Fatal(err)
	}
	first, _ := DataFiles(out)
	if len(first) != 1 || !isSaveData("m.onnx", first[0]) {
		t.Fatalf("data files %v", first)
	}
	if err := m.Save(out, &SaveOptions{External: ExternalAlways}); err != nil {
		t.Fatal(err)
	}
	second, _ := DataFiles(out)
	if len(second) != 1 || second[0] == first[0] {
		t.Fatalf("second save's data files %v (first %v)", second, first)
	}
	if _, err := os.Stat(filepath.Join(dir, first[0])); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the replaced save's data file %s is still there (%v)", first[0], err)
	}
	// an inline save removes the data of the external save it replaces
	if err := m.Save(out, &SaveOptions{External: ExternalNever}); err != nil {
		t.Fatal(err)
	}
	if d := dataFilesNear(t, out); d != nil {
		t.Errorf("data files left after an inline save: %v", d)
	}
	// a hand-made data file (the old fixed name) is kept
	hand, err := Load(out)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range hand.p.Graph.Initializer {
		if i == 0 {
			tt, _ := hand.tensorFromProto(p)
			if err := os.WriteFile(out+".data", tt.data, 0o644); err != nil {
				t.Fatal(err)
			}
			hand.p.Graph.Initializer[i] = &pb.TensorProto{Name: p.Name, DataType: p.DataType, Dims: p.Dims,
				DataLocation: pb.TensorProto_EXTERNAL.Enum(),
				ExternalData: []*pb.StringStringEntryProto{{Key: strPtr("location"), Value: strPtr("m.onnx.data")}}}
		}
	}
	b, err := hand.marshalWith(hand.p.Graph.Initializer)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(out, b); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(out); err != nil {
		t.Fatal(err)
	}
	if err := m.Save(out, &SaveOptions{External: ExternalAlways}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(out + ".data"); err != nil {
		t.Errorf("a hand-made data file was removed: %v", err)
	}
	assertNoTemp(t, dir)
}

func strPtr(s string) *string { return &s }

// TestConcurrentReads runs Bytes, Save and reads of one model at once
// (meant for go test -race: the model must not be written while saving).
func TestConcurrentReads(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src.onnx")
	if err := kitchenSink(t, fixtureOpts{hidden: 300}).Save(src, &SaveOptions{External: ExternalAlways}); err != nil {
		t.Fatal(err)
	}
	m, err := Load(src)
	if err != nil {
		t.Fatal(err)
	}
	want, err := m.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 3; i++ {
				b, err := m.Bytes()
				if err == nil && string(b) != string(want) {
					err = errors.New("Bytes changed between calls")
				}
				if err == nil {
					err = m.Save(filepath.Join(dir, fmt.Sprintf("out%d.onnx", g)), &SaveOptions{External: ExternalMode(1 + (g+i)%2)})
				}
				if err == nil {
					for _, n := range m.Initializers() {
						if _, err = m.Initializer(n); err != nil {
							break
						}
					}
				}
				if err == nil {
					_, err = m.Weights()
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestDuplicateInitializers: two initializers with one name (different
// shapes), or an initializer and a sparse initializer with one name, are
// refused at load, naming the tensor.
func TestDuplicateInitializers(t *testing.T) {
	dir := t.TempDir()
	w, _ := FromFloat32("W", Float, []int64{2, 2}, []float32{1, 2, 3, 4})
	w2, _ := FromFloat32("W", Float, []int64{3}, []float32{1, 2, 3})
	idx, _ := NewTensor("", Int64, []int64{1}, make([]byte, 8))
	cases := map[string]func(g *pb.GraphProto){
		"two initializers": func(g *pb.GraphProto) { g.Initializer = append(g.Initializer, tensorProto(w2)) },
		"initializer and sparse": func(g *pb.GraphProto) {
			g.SparseInitializer = append(g.SparseInitializer, &pb.SparseTensorProto{Values: tensorProto(w2), Indices: tensorProto(idx), Dims: []int64{5}})
		},
		"in a subgraph": func(g *pb.GraphProto) {
			sg := &pb.GraphProto{Name: strPtr("body"), Initializer: []*pb.TensorProto{tensorProto(w), tensorProto(w2)}}
			g.Node = append(g.Node, &pb.NodeProto{OpType: strPtr("If"), Attribute: []*pb.AttributeProto{{Name: strPtr("then_branch"), Type: pb.AttributeProto_GRAPH.Enum(), G: sg}}})
		},
	}
	for name, edit := range cases {
		m := New("dup", 17)
		if err := m.SetInitializer(w); err != nil {
			t.Fatal(err)
		}
		edit(m.p.Graph)
		b, err := m.marshalWith(m.p.Graph.Initializer)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "dup.onnx")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err = Load(path)
		if !errors.Is(err, ErrFormat) || !strings.Contains(fmt.Sprint(err), `"W"`) {
			t.Errorf("%s: got %v, want ErrFormat naming \"W\"", name, err)
		}
	}
}

// TestReadSignatureMatchesLoad: the streaming scanner finds the same
// inputs, outputs and data files as a full load.
func TestReadSignatureMatchesLoad(t *testing.T) {
	dir := t.TempDir()
	m := kitchenSink(t, fixtureOpts{hidden: 300})
	m.AddInput(ValueInfo{Name: "W1", DType: Float}) // an initializer listed as an input (IR < 4) is not an input
	for _, ext := range []ExternalMode{ExternalNever, ExternalAlways} {
		out := filepath.Join(dir, fmt.Sprintf("m%d.onnx", ext))
		if err := m.Save(out, &SaveOptions{External: ext}); err != nil {
			t.Fatal(err)
		}
		full, err := Load(out)
		if err != nil {
			t.Fatal(err)
		}
		sig, err := ReadSignature(out)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(sig.Inputs) != fmt.Sprint(full.Inputs()) || fmt.Sprint(sig.Outputs) != fmt.Sprint(full.Outputs()) {
			t.Errorf("%s: signature %v → %v, Load %v → %v", out, sig.Inputs, sig.Outputs, full.Inputs(), full.Outputs())
		}
		locs, err := DataFiles(out)
		if err != nil {
			t.Fatal(err)
		}
		want, _, err := full.ExternalFiles()
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(locs) != fmt.Sprint(want) || (ext == ExternalAlways) != (len(locs) == 1) {
			t.Errorf("%s: DataFiles %v, ExternalFiles %v", out, locs, want)
		}
	}
	// truncated files are errors, not panics
	b, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("m%d.onnx", ExternalNever)))
	for _, n := range []int{1, 7, len(b) / 2, len(b) - 1} {
		p := filepath.Join(dir, "cut.onnx")
		os.WriteFile(p, b[:n], 0o644)
		if _, err := ReadSignature(p); err == nil {
			t.Errorf("a file cut at %d bytes gave no error", n)
		}
	}
}

// TestLoadLazyMatchesLoad: a lazily loaded model reads the same tensors,
// graph and weights as a full load, and serializes to the same bytes.
func TestLoadLazyMatchesLoad(t *testing.T) {
	dir := t.TempDir()
	m := kitchenSink(t, fixtureOpts{hidden: 300})
	defer func(v int64) { lazyThreshold = v }(lazyThreshold)
	lazyThreshold = 1024
	for _, ext := range []ExternalMode{ExternalNever, ExternalAlways} {
		out := filepath.Join(dir, fmt.Sprintf("m%d.onnx", ext))
		if err := m.Save(out, &SaveOptions{External: ext}); err != nil {
			t.Fatal(err)
		}
		full, err := Load(out)
		if err != nil {
			t.Fatal(err)
		}
		lazy, err := LoadLazy(out)
		if err != nil {
			t.Fatal(err)
		}
		lazyCount := 0
		for _, n := range full.Initializers() {
			a, err1 := full.Initializer(n)
			b, err2 := lazy.Initializer(n)
			if err1 != nil || err2 != nil || a.DType != b.DType || !equalShape(a.Shape, b.Shape) || string(a.Bytes()) != string(b.Bytes()) {
				t.Errorf("%s: initializer %q differs (%v, %v)", out, n, err1, err2)
			}
			if lazy.IsExternal(n) && !full.IsExternal(n) {
				lazyCount++
			}
		}
		if ext == ExternalNever && lazyCount == 0 {
			t.Errorf("%s: no initializer was left in the file", out)
		}
		sum := func(m *Model) string {
			ws, err := m.Weights()
			out := fmt.Sprint(err)
			for _, w := range ws {
				out += fmt.Sprint(w.Name, w.Role, w.DType, w.Shape, w.Params())
			}
			for _, n := range m.Nodes() {
				out += fmt.Sprint(n.Name, n.OpType, n.Inputs, n.Outputs)
			}
			return out + fmt.Sprint(m.Metadata(), m.Inputs(), m.Outputs())
		}
		if sum(full) != sum(lazy) {
			t.Errorf("%s: weights, nodes or metadata differ:\n%s\n%s", out, sum(full), sum(lazy))
		}
		ba, _ := full.Bytes()
		bb, err := lazy.Bytes()
		if err != nil || string(ba) != string(bb) {
			t.Errorf("%s: Bytes differ (%v)", out, err)
		}
	}
}
