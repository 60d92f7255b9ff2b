package pluginhost

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/time/rate"
)

// maxLine bounds one line of plugin output; the rest of a longer line is
// dropped.
const maxLine = 64 << 10

// readLines calls fn with each line of r, without its line ending and cut at
// maxLine bytes (cut reports that). fn must not keep line. It returns at the
// end of r.
func readLines(r io.Reader, fn func(line []byte, cut bool)) {
	br := bufio.NewReaderSize(r, 4096)
	var (
		buf []byte
		cut bool
	)
	for {
		chunk, more, err := br.ReadLine()
		if err != nil {
			if len(buf) > 0 {
				fn(buf, cut)
			}
			return
		}
		if room := maxLine - len(buf); len(chunk) > room {
			chunk, cut = chunk[:room], true
		}
		buf = append(buf, chunk...)
		if !more {
			fn(buf, cut)
			buf, cut = buf[:0], false
		}
	}
}

// stderrForwarder turns a plugin's stderr into log lines of the daemon's
// logger: hclog's JSON lines (what sdk.Serve writes) keep their level,
// message, module and fields; other lines are logged as text, at the level
// of a "[LEVEL]" prefix when there is one, at error from a Go panic or fatal
// error on, and at info otherwise.
//
// go-plugin would do this itself, but a line whose "@message" is not a
// string panics its parser, and a plugin must not be able to crash the
// daemon; so the runner hands go-plugin an empty stderr and forwards here.
type stderrForwarder struct {
	log   hclog.Logger // named after the plugin
	name  string       // the plugin's name, the default "@module"
	limit *logLimiter

	mu        sync.Mutex
	panicking bool // a Go panic started: the rest is its trace
}

// line forwards one line.
func (f *stderrForwarder) line(b []byte, cut bool) {
	if len(bytes.TrimSpace(b)) == 0 {
		return
	}
	if !cut && b[0] == '{' && f.json(b) {
		return
	}
	text := sanitize(string(b))
	level := hclog.Info
	f.mu.Lock()
	for _, l := range []hclog.Level{hclog.Trace, hclog.Debug, hclog.Info, hclog.Warn, hclog.Error} {
		if p := "[" + strings.ToUpper(l.String()) + "]"; strings.HasPrefix(text, p) {
			level, text = l, strings.TrimSpace(strings.TrimPrefix(text, p))
			break
		}
	}
	if strings.HasPrefix(text, "panic: ") || strings.HasPrefix(text, "fatal error: ") {
		f.panicking = true
	}
	if f.panicking {
		level = hclog.Error
	}
	f.mu.Unlock()
	if cut {
		f.emit(level, text, "truncated", true)
		return
	}
	f.emit(level, text)
}

// emit logs one line of the plugin's, unless it logs beyond its rate.
func (f *stderrForwarder) emit(level hclog.Level, msg string, args ...any) {
	if level < f.log.GetLevel() || !f.limit.allow() {
		return
	}
	f.log.Log(level, msg, args...)
}

// json forwards an hclog JSON line and reports whether b was one.
func (f *stderrForwarder) json(b []byte) bool {
	var m map[string]any
	if json.Unmarshal(b, &m) != nil {
		return false
	}
	msg, ok := m["@message"].(string)
	if !ok {
		return false
	}
	lvl, _ := m["@level"].(string)
	level := hclog.LevelFromString(lvl)
	if level == hclog.NoLevel || level == hclog.Off {
		level = hclog.Info
	}
	if level < f.log.GetLevel() {
		return true
	}
	module, _ := m["@module"].(string)
	for _, k := range []string{"@message", "@level", "@timestamp", "@module", "@caller"} {
		delete(m, k)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	args := make([]any, 0, 2*len(keys)+2)
	for _, k := range keys {
		// A field's name is written as it is in a text log, and a field
		// named like the daemon's own would replace it in a JSON log.
		name := sanitize(k)
		if name == "plugin" {
			name = "plugin_field"
		}
		args = append(args, name, m[k])
	}
	if module != "" && module != f.name {
		args = append(args, "module", module)
	}
	f.emit(level, sanitize(msg), args...)
	return true
}

// A plugin's log lines are rate-limited, so that a plugin logging in a loop
// cannot flood the daemon's log (one that logged an error per call wrote
// 22 MB in three sign-ins): logLinesPerSecond on average, logBurst at once.
// What is dropped is counted (PluginStatus.LogLinesDropped) and reported in
// a warning at most every logDropReportEvery.
const (
	logLinesPerSecond = 50
	logBurst          = 200
)

// logDropReportEvery is the least time between two reports of dropped log
// lines; tests shorten it.
var logDropReportEvery = 10 * time.Second

// logLimiter is a token bucket over one plugin's log lines. It is safe for
// concurrent use.
type logLimiter struct {
	lim     *rate.Limiter
	log     hclog.Logger
	dropped atomic.Uint64 // since the start

	mu      sync.Mutex
	pending uint64      // dropped since the last report
	report  *time.Timer // the report due; nil when none is
}

func newLogLimiter(log hclog.Logger) *logLimiter {
	return &logLimiter{lim: rate.NewLimiter(logLinesPerSecond, logBurst), log: log}
}

// allow reports whether one more line may be logged now, and counts it
// dropped if not. A nil limiter allows every line.
func (l *logLimiter) allow() bool {
	if l == nil || l.lim.Allow() {
		return true
	}
	l.dropped.Add(1)
	l.mu.Lock()
	l.pending++
	if l.report == nil {
		l.report = time.AfterFunc(logDropReportEvery, l.reportDropped)
	}
	l.mu.Unlock()
	return false
}

// reportDropped logs how many lines were dropped since the last report.
func (l *logLimiter) reportDropped() {
	l.mu.Lock()
	n := l.pending
	l.pending, l.report = 0, nil
	l.mu.Unlock()
	l.log.Warn(fmt.Sprintf("plugin log lines dropped: the plugin logs more than %d lines a second (%d at once)", logLinesPerSecond, logBurst),
		"dropped", n, "droppedTotal", l.dropped.Load())
}

// Write forwards text a plugin wrote to its os.Stderr after the handshake,
// which go-plugin relays (ClientConfig.SyncStderr).
func (f *stderrForwarder) Write(p []byte) (int, error) {
	for line := range bytes.Lines(p) {
		f.line(bytes.TrimRight(line, "\r\n"), false)
	}
	return len(p), nil
}

// maxStdoutReports is how many stray stdout lines of a plugin are logged.
const maxStdoutReports = 100

// stdoutReporter logs, as warnings, what a plugin writes to stdout after the
// handshake: stdout belongs to go-plugin, and the lines would otherwise be
// thrown away silently. It is fed both by go-plugin's stdio relay (Go
// plugins, ClientConfig.SyncStdout) and by the runner (the raw stdout of
// other plugins). It is safe for concurrent use.
type stdoutReporter struct {
	log hclog.Logger

	mu       sync.Mutex
	partial  []byte
	reported int
}

// Write reports every complete line of p; an incomplete one waits for the
// rest.
func (s *stdoutReporter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		end := i
		if i < 0 {
			end = len(p)
		}
		s.partial = append(s.partial, p[:min(end, max(0, maxLine-len(s.partial)))]...)
		if i < 0 {
			break
		}
		s.reportLocked(s.partial)
		s.partial, p = s.partial[:0], p[i+1:]
	}
	return n, nil
}

// report reports one line.
func (s *stdoutReporter) report(line []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reportLocked(line)
}

func (s *stdoutReporter) reportLocked(line []byte) {
	s.reported++
	switch {
	case s.reported <= maxStdoutReports:
		s.log.Warn("plugin wrote to stdout, which belongs to the plugin protocol; plugins must log to stderr", "line", truncate(sanitize(string(bytes.TrimRight(line, "\r"))), 256))
	case s.reported == maxStdoutReports+1:
		s.log.Warn("plugin keeps writing to stdout; its further stdout lines are dropped without a report")
	}
}

// sanitize makes s valid UTF-8 without control characters other than tab,
// so that a plugin cannot forge log lines.
func sanitize(s string) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || (r < 0x20 && r != '\t') || r == 0x7f {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == utf8.RuneError:
			b.WriteRune('\uFFFD')
		case (r < 0x20 && r != '\t') || r == 0x7f:
			b.WriteRune('\uFFFD')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// truncate cuts s to at most n bytes, on a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// quietLogger is the logger handed to go-plugin: everything it logs comes
// out one level lower, at debug at most. The host reports what matters
// itself, with more context (a plugin's exit, a kill, a failed start, which
// go-plugin also returns as errors); at go-plugin's own levels a deliberate
// kill of a hung plugin would read as an error.
type quietLogger struct{ hclog.Logger }

func (l quietLogger) Log(level hclog.Level, msg string, args ...any) {
	if level > hclog.Debug {
		level = hclog.Debug
	} else if level > hclog.Trace {
		level = hclog.Trace
	}
	l.Logger.Log(level, msg, args...)
}

func (l quietLogger) Trace(msg string, args ...any) { l.Logger.Trace(msg, args...) }
func (l quietLogger) Debug(msg string, args ...any) { l.Logger.Trace(msg, args...) }
func (l quietLogger) Info(msg string, args ...any)  { l.Logger.Debug(msg, args...) }
func (l quietLogger) Warn(msg string, args ...any)  { l.Logger.Debug(msg, args...) }
func (l quietLogger) Error(msg string, args ...any) { l.Logger.Debug(msg, args...) }

func (l quietLogger) With(args ...any) hclog.Logger { return quietLogger{l.Logger.With(args...)} }
func (l quietLogger) Named(name string) hclog.Logger {
	return quietLogger{l.Logger.Named(name)}
}
func (l quietLogger) ResetNamed(name string) hclog.Logger {
	return quietLogger{l.Logger.ResetNamed(name)}
}
