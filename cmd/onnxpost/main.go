// Command onnxpost post-processes trained ONNX models: merge, compress,
// quantize and search, checked by ONNX Runtime before anything is written.
//
// This package holds flags and wiring only; the algorithms live in the
// imported packages (onnxio, merge, compress/..., quant, evalharness, pipeline).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/onnxpost/onnxpost/internal/safe"
	"github.com/onnxpost/onnxpost/pipeline"
	"github.com/onnxpost/onnxpost/release"
)

// Exit codes of the CLI contract (docs/ARCHITECTURE.md §3).
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
	exitGate  = 3
)

// version is the tool version recorded in outputs' provenance.
var version = release.Version

// commands is filled by each command's file in its init function.
var commands []*cli.Command

func register(c *cli.Command) { commands = append(commands, c) }

// usageError marks an error as a usage error (exit code 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// usagef returns a usage error (exit code 2).
func usagef(format string, args ...any) error {
	return usageError{fmt.Sprintf(format, args...)}
}

// gateError marks a failed accuracy gate (exit code 3).
type gateError struct{ msg string }

func (e gateError) Error() string { return e.msg }

func newApp() *cli.App {
	wrapBranchCommands()
	sort.Slice(commands, func(i, j int) bool { return commands[i].Name < commands[j].Name })
	app := &cli.App{
		Name:    "onnxpost",
		Usage:   "merge, compress and quantize ONNX models, checked by ONNX Runtime before writing",
		Version: version,
		Description: `onnxpost reads trained ONNX models, applies weight-space operations
(merging, low-rank factorization, sparsity, quantization, per-layer search),
evaluates the result with ONNX Runtime on your data, and writes the output
only when the accuracy gate passes.

Examples:
  onnxpost inspect model.onnx
  onnxpost eval model.onnx --data test.npz --metrics accuracy,latency
  onnxpost merge --method ties --base base.onnx -o merged.onnx a.onnx b.onnx

Exit codes: 0 done, 1 error, 2 usage, 3 gate failed (output not written),
130 and 143 cancelled by SIGINT or SIGTERM (temporary files removed, existing
outputs untouched; a second signal exits at once). A bug exits 1 with
"internal error:"; set ONNXPOST_DEBUG=1 to print its stack.`,
		Commands:        commands,
		HideHelpCommand: false,
		OnUsageError: func(c *cli.Context, err error, isSubcommand bool) error {
			return usageError{err.Error()}
		},
		ExitErrHandler: func(c *cli.Context, err error) {},
	}
	for _, cmd := range app.Commands {
		if cmd.OnUsageError == nil {
			cmd.OnUsageError = func(c *cli.Context, err error, isSubcommand bool) error {
				return usageError{err.Error()}
			}
		}
	}
	return app
}

func main() {
	os.Exit(run(os.Args))
}

// commandHook, when set (by tests), is called with the command's name just
// before the command runs, inside the same panic guard.
var commandHook func(name string)

// run executes the CLI and maps errors to the contract's exit codes.
// SIGINT and SIGTERM cancel the context every command works under; the
// command then returns, its deferred clean-ups remove the temporary files,
// and run returns 130 or 143. A panic anywhere in the command (or in a
// worker that converts it into an error) exits 1 with "internal error:".
func run(args []string) int {
	app := newApp()
	name := firstCommand(args)
	if name != "" && name != "help" && name != "h" && app.Command(name) == nil {
		fmt.Fprintf(os.Stderr, "onnxpost: unknown command %q; see 'onnxpost --help'\n", name)
		return exitUsage
	}
	if name == "" {
		name = "onnxpost"
	}
	args = reorderArgs(app, args)
	ctx, stop := signalContext(context.Background())
	defer stop()
	ctx = context.WithValue(ctx, rawArgsKey{}, args)
	err := safe.Call(name, func() error {
		if commandHook != nil {
			commandHook(name)
		}
		return app.RunContext(ctx, args)
	})
	var se signalError
	if errors.As(context.Cause(ctx), &se) {
		var pe *safe.PanicError
		if !errors.As(err, &pe) {
			if err == nil {
				fmt.Fprintf(os.Stderr, "onnxpost: %s: cancelled after %s had finished\n", se.name(), name)
			} else {
				fmt.Fprintf(os.Stderr, "onnxpost: %s: %s cancelled; temporary files removed, existing outputs untouched\n", se.name(), name)
			}
			return se.exitCode()
		}
	}
	words := flagWords
	if name == "run" {
		words = recipeWords
	}
	return exitCodeIn(err, words)
}

// signalError is the cause of a context cancelled by SIGINT or SIGTERM.
type signalError struct{ sig syscall.Signal }

func (e signalError) Error() string { return "interrupted by " + e.name() }

func (e signalError) name() string {
	switch e.sig {
	case syscall.SIGINT:
		return "SIGINT"
	case syscall.SIGTERM:
		return "SIGTERM"
	}
	return e.sig.String()
}

// exitCode is the shell's convention: 128 + the signal's number (130 for
// SIGINT, 143 for SIGTERM).
func (e signalError) exitCode() int { return 128 + int(e.sig) }

// signalContext returns a context cancelled (with a signalError cause) by
// the first SIGINT or SIGTERM; a second one exits at once, without waiting
// for the clean-up. stop releases the signals.
func signalContext(parent context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(parent)
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		select {
		case s := <-ch:
			cancel(signalError{s.(syscall.Signal)})
		case <-done:
			return
		}
		select {
		case s := <-ch:
			se := signalError{s.(syscall.Signal)}
			fmt.Fprintf(os.Stderr, "onnxpost: second %s: exiting without clean-up\n", se.name())
			os.Exit(se.exitCode())
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(ch)
		close(done)
		<-finished
		cancel(nil)
	}
}

// exitCode maps err to the contract's exit code and prints it in the
// command line's words (flagWords).
func exitCode(err error) int { return exitCodeIn(err, flagWords) }

// exitCodeIn is exitCode with the library's words phrased by words.
func exitCodeIn(err error, words func(string) string) int {
	if err == nil {
		return exitOK
	}
	var ue usageError
	var ge gateError
	var pe *safe.PanicError
	switch {
	case errors.As(err, &pe):
		fmt.Fprintln(os.Stderr, "onnxpost:", pe.Error())
		if safe.Debug() {
			os.Stderr.Write(pe.Stack)
		} else {
			fmt.Fprintf(os.Stderr, "onnxpost: this is a bug in onnxpost; run with %s=1 for the stack and report it\n", safe.DebugEnv)
		}
		return exitError
	case errors.As(err, &ge):
		fmt.Fprintln(os.Stderr, "onnxpost: gate failed:", words(ge.msg))
		return exitGate
	case errors.Is(err, release.ErrGateFailed):
		// the library's gate failure (a recipe's final commit)
		fmt.Fprintln(os.Stderr, "onnxpost: gate failed:", cliWords(err, words))
		return exitGate
	case errors.As(err, &ue):
		fmt.Fprintln(os.Stderr, "onnxpost: usage:", words(ue.msg))
		return exitUsage
	case errors.Is(err, pipeline.ErrUsage):
		// the library's usage errors (bad values and combinations found
		// by the commands' library entry points, in a recipe step too)
		fmt.Fprintln(os.Stderr, "onnxpost: usage:", cliWords(err, words))
		return exitUsage
	}
	if isMissingFlag(err) {
		fmt.Fprintln(os.Stderr, "onnxpost: usage:", err.Error())
		return exitUsage
	}
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		if msg := ec.Error(); msg != "" {
			fmt.Fprintln(os.Stderr, "onnxpost:", words(msg))
		}
		return ec.ExitCode()
	}
	fmt.Fprintln(os.Stderr, "onnxpost:", cliMessage(err, words))
	return exitError
}

// reorderArgs moves flags that follow positional arguments in front of them,
// so `onnxpost merge a.onnx b.onnx -o out.onnx` parses like
// `onnxpost merge -o out.onnx a.onnx b.onnx`. Everything after "--" stays
// positional.
func reorderArgs(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	var cmd *cli.Command
	ci := -1
	for i := 1; i < len(args); i++ {
		if strings.HasPrefix(args[i], "-") {
			continue
		}
		for _, c := range app.Commands {
			if c.HasName(args[i]) {
				cmd, ci = c, i
			}
		}
		break
	}
	if cmd == nil {
		return args
	}
	if cmd.Name == "help" {
		return args
	}
	takesValue := map[string]bool{}
	for _, f := range cmd.Flags {
		_, isBool := f.(*cli.BoolFlag)
		for _, n := range f.Names() {
			takesValue[n] = !isBool
		}
	}
	var flags, pos []string
	rest := args[ci+1:]
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		if a == "--" {
			pos = append(pos, rest[i+1:]...)
			break
		}
		if strings.HasPrefix(a, "-") && a != "-" {
			flags = append(flags, a)
			name := strings.TrimLeft(a, "-")
			if strings.Contains(name, "=") {
				continue
			}
			if takesValue[name] && i+1 < len(rest) {
				flags = append(flags, rest[i+1])
				i++
			}
			continue
		}
		pos = append(pos, a)
	}
	out := append([]string{}, args[:ci+1]...)
	out = append(out, flags...)
	if len(pos) > 0 {
		out = append(out, "--")
		out = append(out, pos...)
	}
	return out
}

// firstCommand returns the first argument that is not a flag (the
// subcommand's name), or "".
func firstCommand(args []string) string {
	for _, a := range args[1:] {
		if !strings.HasPrefix(a, "-") {
			return a
		}
	}
	return ""
}

// isMissingFlag reports whether err is urfave/cli's error for a flag
// declared Required that was not given: a usage error (exit 2), not a
// failure of the command. The library's error type is unexported, so it
// is recognised by its fixed message.
func isMissingFlag(err error) bool {
	msg := err.Error()
	return strings.HasPrefix(msg, "Required flag ") || strings.HasPrefix(msg, "Required flags ")
}
