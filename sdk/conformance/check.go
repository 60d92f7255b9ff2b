package conformance

import (
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/spectroauth/spectroauth/sdk/pluginclient"
)

// Result counts the checks of CheckBinary: every check that has no checks
// of its own, and every one that failed on its own account.
type Result struct {
	Passed, Failed int
}

// String says "N passed, M failed".
func (r Result) String() string { return fmt.Sprintf("%d passed, %d failed", r.Passed, r.Failed) }

// CheckBinary runs the suite of RunBinary against the plugin binary at path
// outside a Go test, for authors in any language: it writes each failed
// check, with what it found, to w, and returns the counts.
func CheckBinary(w io.Writer, path string, s Suite, args ...string) Result {
	return check(w, s, func(t Tester) *pluginclient.Client { return StartBinary(t, path, args...) })
}

// CheckClient runs the suite against the plugin c is a client of, started
// by the caller (`spectroauthd plugin test` starts it through the daemon's
// own runner), as CheckBinary does. c must be described (pluginclient.Open
// does it) and not yet configured; the caller stops the plugin.
func CheckClient(w io.Writer, c *pluginclient.Client, s Suite) Result {
	return check(w, s, func(Tester) *pluginclient.Client { return c })
}

// check runs the suite on the client start returns, reporting to w.
func check(w io.Writer, s Suite, start func(Tester) *pluginclient.Client) Result {
	var res Result
	rep := &report{w: w, name: "conformance", res: &res, mu: &sync.Mutex{}}
	rep.do(func(t Tester) { RunClient(t, start(t), s) })
	return res
}

// report is one check of CheckBinary, a tester outside a Go test. Only the
// methods the suite uses are implemented; the embedded T, nil, is
// there to satisfy the interface.
type report struct {
	T
	w    io.Writer
	name string
	res  *Result
	mu   *sync.Mutex // shared by the whole report: guards w, res and the fields below

	failed   bool
	children int
	logs     []string
	cleanups []func()
}

var _ Tester = (*report)(nil)

// do runs f as this check, in a goroutine of its own (Fatalf ends it), then
// its cleanups, and counts it.
func (r *report) do(f func(Tester)) bool {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
	r.mu.Lock()
	cleanups := slices.Clone(r.cleanups)
	r.mu.Unlock()
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.failed:
		r.res.Failed++
		fmt.Fprintf(r.w, "FAIL %s\n", r.name)
		for _, l := range r.logs {
			fmt.Fprintf(r.w, "    %s\n", strings.ReplaceAll(l, "\n", "\n    "))
		}
	case r.children == 0:
		r.res.Passed++
	}
	return !r.failed
}

// Run runs f as the check called name, a child of r.
func (r *report) Run(name string, f func(Tester)) bool {
	r.mu.Lock()
	r.children++
	r.mu.Unlock()
	child := &report{w: r.w, name: r.name + "/" + name, res: r.res, mu: r.mu}
	// A parent fails only on its own account: its failed checks are
	// counted each.
	return child.do(f)
}

// Helper does nothing: messages name no source line.
func (r *report) Helper() {}

// Cleanup registers f to run when the check ends.
func (r *report) Cleanup(f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cleanups = append(r.cleanups, f)
}

// Log records a message, shown if the check fails.
func (r *report) Log(args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.logs = append(r.logs, strings.TrimSuffix(fmt.Sprintln(args...), "\n"))
}

// Logf records a message, shown if the check fails.
func (r *report) Logf(format string, args ...any) { r.Log(fmt.Sprintf(format, args...)) }

// Errorf fails the check with a message.
func (r *report) Errorf(format string, args ...any) {
	r.Log(fmt.Sprintf(format, args...))
	r.mu.Lock()
	r.failed = true
	r.mu.Unlock()
}

// Error fails the check with a message.
func (r *report) Error(args ...any) { r.Errorf("%s", fmt.Sprint(args...)) }

// Fatalf fails the check with a message and ends it.
func (r *report) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	runtime.Goexit()
}

// Fatal fails the check with a message and ends it.
func (r *report) Fatal(args ...any) { r.Fatalf("%s", fmt.Sprint(args...)) }

// Failed reports whether the check has failed.
func (r *report) Failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failed
}

// Name is the check's path.
func (r *report) Name() string { return r.name }
