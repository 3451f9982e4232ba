//go:build unix

package onnxio

import (
	"bufio"
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
