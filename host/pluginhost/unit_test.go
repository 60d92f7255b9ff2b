package pluginhost

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/spectroauth/spectroauth/config"
	"github.com/spectroauth/spectroauth/sdk"
	"github.com/spectroauth/spectroauth/sdk/pluginclient"
)

func jsonLogger(buf *bytes.Buffer, level hclog.Level) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "d", Output: buf, Level: level, JSONFormat: true})
}

func decodeLines(t *testing.T, b []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range bytes.Lines(b) {
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		delete(m, "@timestamp")
		out = append(out, m)
	}
	return out
}

func TestStderrForwarder(t *testing.T) {
	var buf bytes.Buffer
	f := &stderrForwarder{log: jsonLogger(&buf, hclog.Debug), name: "cat"}
	input := strings.Join([]string{
		`{"@level":"warn","@message":"slow catalog","@module":"cat","@timestamp":"2026-01-01T00:00:00.000000Z","ms":120}`,
		`{"@level":"trace","@message":"below the level"}`,
		`{"@level":"error","@message":"cache","@module":"cat.cache","@caller":"x.go:1"}`,
		`{"@message":7}`,
		`[WARN] prefixed`,
		``,
		"plain\x1b[31mred",
		`panic: boom`,
		`goroutine 1 [running]:`,
	}, "\n")
	readLines(strings.NewReader(input), f.line)
	got := decodeLines(t, buf.Bytes())
	want := []map[string]any{
		{"@level": "warn", "@message": "slow catalog", "@module": "d", "ms": 120.0},
		{"@level": "error", "@message": "cache", "@module": "d", "module": "cat.cache"},
		{"@level": "info", "@message": `{"@message":7}`, "@module": "d"},
		{"@level": "warn", "@message": "prefixed", "@module": "d"},
		{"@level": "info", "@message": "plain\ufffd[31mred", "@module": "d"},
		{"@level": "error", "@message": "panic: boom", "@module": "d"},
		{"@level": "error", "@message": "goroutine 1 [running]:", "@module": "d"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(got), len(want), buf.String())
	}
	for i := range want {
		if fmtJSONUnit(got[i]) != fmtJSONUnit(want[i]) {
			t.Errorf("line %d = %v, want %v", i, got[i], want[i])
		}
	}
}

func fmtJSONUnit(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestStderrForwarderFieldsCannotForge: the fields of a plugin's JSON log
// line can neither start a new line of the daemon's text log nor pass the
// line off as another plugin's.
func TestStderrForwarderFieldsCannotForge(t *testing.T) {
	var text bytes.Buffer
	log := hclog.New(&hclog.LoggerOptions{Name: "d", Output: &text, Level: hclog.Debug}).Named("cat").With("plugin", "cat")
	f := &stderrForwarder{log: log, name: "cat"}
	f.line([]byte(`{"@message":"m","x\n2026-01-01T00:00:00.000Z [ERROR] d.oidc: forged: plugin":"y"}`), false)
	if n := strings.Count(text.String(), "\n"); n != 1 || strings.Contains(text.String(), "\n2026-01-01") {
		t.Errorf("a field name started a new log line:\n%s", text.String())
	}

	var buf bytes.Buffer
	f = &stderrForwarder{log: jsonLogger(&buf, hclog.Debug).Named("cat").With("plugin", "cat"), name: "cat"}
	f.line([]byte(`{"@message":"m","plugin":"oidc","n":1}`), false)
	got := decodeLines(t, buf.Bytes())
	if len(got) != 1 || got[0]["plugin"] != "cat" || got[0]["plugin_field"] != "oidc" || got[0]["n"] != 1.0 {
		t.Errorf("line = %v, want plugin cat", got)
	}
}

func TestReadLinesCutsLongLines(t *testing.T) {
	long := strings.Repeat("x", maxLine+10)
	var lines []string
	var cuts []bool
	readLines(strings.NewReader(long+"\nshort\nlast"), func(l []byte, cut bool) {
		lines = append(lines, string(l))
		cuts = append(cuts, cut)
	})
	if len(lines) != 3 || len(lines[0]) != maxLine || !cuts[0] || lines[1] != "short" || cuts[1] || lines[2] != "last" {
		t.Errorf("lines %d, first %d bytes cut=%v, then %q %v", len(lines), len(lines[0]), cuts[0], lines[1:], cuts)
	}
}

func TestStdoutReporter(t *testing.T) {
	var buf bytes.Buffer
	s := &stdoutReporter{log: jsonLogger(&buf, hclog.Info)}
	s.Write([]byte("first li"))
	s.Write([]byte("ne\nsecond\nthi"))
	if n := bytes.Count(buf.Bytes(), []byte("\n")); n != 2 {
		t.Fatalf("%d reports, want 2 (an incomplete line waits):\n%s", n, buf.String())
	}
	got := decodeLines(t, buf.Bytes())
	if got[0]["line"] != "first line" || got[1]["line"] != "second" || got[0]["@level"] != "warn" {
		t.Errorf("reports = %v", got)
	}
	buf.Reset()
	for range maxStdoutReports + 10 {
		s.report([]byte("spam"))
	}
	if n := bytes.Count(buf.Bytes(), []byte("\n")); n != maxStdoutReports-2+1 {
		t.Errorf("%d reports after the flood, want %d", n, maxStdoutReports-2+1)
	}
	if !strings.Contains(buf.String(), "further stdout lines are dropped") {
		t.Error("the cut-off is not reported")
	}
}

func TestQuietLogger(t *testing.T) {
	var buf bytes.Buffer
	l := quietLogger{jsonLogger(&buf, hclog.Trace)}.Named("go-plugin")
	l.Error("e")
	l.Warn("w")
	l.Info("i")
	l.Debug("d")
	l.Log(hclog.Error, "le")
	var levels []string
	for _, m := range decodeLines(t, buf.Bytes()) {
		levels = append(levels, m["@level"].(string))
	}
	if strings.Join(levels, ",") != "debug,debug,debug,trace,debug" {
		t.Errorf("levels = %v", levels)
	}
}

func TestSanitizeAndTruncate(t *testing.T) {
	if got := sanitize("a\tb\nc\x00\xff"); got != "a\tb\ufffdc\ufffd\ufffd" {
		t.Errorf("sanitize = %q", got)
	}
	if got := truncate("héllo", 2); got != "h…" {
		t.Errorf("truncate = %q", got)
	}
}

func TestUnavailableError(t *testing.T) {
	tests := []struct {
		err  *UnavailableError
		want string
	}{
		{&UnavailableError{Plugin: "catalog", State: StateRestarting, Reason: "after a crash", RetryAfter: 1200 * time.Millisecond},
			`plugin "catalog" is restarting after a crash; retry in 1.2s`},
		{&UnavailableError{Plugin: "catalog", State: StateRestarting, Reason: "after a crash", Detail: "exit status 3", RetryAfter: retryAfter(1150 * time.Millisecond)},
			`plugin "catalog" is restarting after a crash (exit status 3); retry in 1.2s`},
		{&UnavailableError{Plugin: "catalog", State: StateRestarting, Reason: "after it stopped answering"},
			`plugin "catalog" is restarting after it stopped answering; it is being started again, retry in a moment`},
		{&UnavailableError{Plugin: "catalog", State: StateStopped, Reason: "because the daemon is shutting down"},
			`plugin "catalog" is stopped because the daemon is shutting down`},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
		if !errors.Is(tt.err, ErrUnavailable) || errors.Is(tt.err, ErrClosed) != (tt.err.State == StateStopped) || errors.Is(tt.err, sdk.ErrNotFound) {
			t.Errorf("%v matches the wrong sentinels", tt.err)
		}
	}
}

func TestAtKey(t *testing.T) {
	err := atKey("plugins.cat.config", &sdk.ConfigError{Key: "tls.ca", Err: errors.New("no such file")})
	var ce *sdk.ConfigError
	if err.Error() != "plugins.cat.config.tls.ca: no such file" || !errors.As(err, &ce) || ce.Key != "tls.ca" {
		t.Errorf("atKey = %v", err)
	}
	if err := atKey("plugins.cat.config", &sdk.ConfigError{Err: errors.New("bad")}); err.Error() != "plugins.cat.config: bad" {
		t.Errorf("atKey without key = %v", err)
	}
	if err := atKey("x", errors.New("other")); err.Error() != "x: other" {
		t.Errorf("atKey of another error = %v", err)
	}
}

func TestUsesFromConfig(t *testing.T) {
	cfg := &config.Config{
		Auth: config.Auth{Providers: config.Providers{SpectroCloud: map[string]config.ProviderEnv{
			"production":  {SignIn: config.SignIn{Resolvers: []config.ResolverRef{{Plugin: "catalog", Resolver: "byEmail", Options: map[string]any{"a": 1}}}}},
			"development": {SignIn: config.SignIn{Resolvers: []config.ResolverRef{{Plugin: "builtin", Resolver: "x"}, {Plugin: "catalog", Resolver: "byName"}}}},
		}}},
		Kubernetes: config.Kubernetes{
			Clusters: []config.Cluster{{Name: "c", Strategy: config.StrategyRef{Plugin: "palette", Strategy: "oidc"}}},
			Sources:  []config.Source{{Plugin: "palette", Strategy: config.StrategyRef{Plugin: "palette", Strategy: "token"}}, {Plugin: "other"}},
		},
	}
	var got []string
	for _, u := range UsesFromConfig(cfg) {
		got = append(got, u.Key+" "+u.Plugin+" "+string(u.Role)+" "+u.Name+" "+u.nameKey())
	}
	want := []string{
		"auth.providers.spectrocloud.development.signIn.resolvers[1] catalog RESOLVER byName auth.providers.spectrocloud.development.signIn.resolvers[1].resolver",
		"auth.providers.spectrocloud.production.signIn.resolvers[0] catalog RESOLVER byEmail auth.providers.spectrocloud.production.signIn.resolvers[0].resolver",
		"kubernetes.clusters[0].strategy palette CLUSTER_STRATEGY oidc kubernetes.clusters[0].strategy.strategy",
		"kubernetes.sources[0] palette CLUSTER_SOURCE  kubernetes.sources[0].plugin",
		"kubernetes.sources[0].strategy palette CLUSTER_STRATEGY token kubernetes.sources[0].strategy.strategy",
		"kubernetes.sources[1] other CLUSTER_SOURCE  kubernetes.sources[1].plugin",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("uses =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestCheckOffered(t *testing.T) {
	info := sdk.Info{Capabilities: []sdk.Capability{sdk.CapabilityResolver}, Resolvers: []string{"a", "b"}}
	if err := checkOffered("p", info, sdk.CapabilityResolver, "a"); err != nil {
		t.Error(err)
	}
	if err := checkOffered("p", info, sdk.CapabilityClusterSource, ""); err == nil || err.Error() != `plugin "p" is not a cluster source (it offers: RESOLVER)` {
		t.Errorf("source = %v", err)
	}
}

// TestDeadlineAnswerIsNoMiss: a DEADLINE_EXCEEDED the plugin sends before
// the call's deadline is an answer, even when it arrives within
// deadlineSlack of it; a call that gets no answer by then is a miss.
func TestDeadlineAnswerIsNoMiss(t *testing.T) {
	h := &Host{opts: Options{MaxMisses: 2}, log: hclog.NewNullLogger()}
	in := &instance{h: h, name: "tp", log: h.log, timeout: 200 * time.Millisecond}
	in.cur.Store(&generation{failed: make(chan struct{})})
	// What the plugin's DEADLINE_EXCEEDED becomes on this side.
	answer := fmt.Errorf("plugin call: the plugin's own work ran out of time: slow: %w", &pluginclient.PluginRanOutOfTimeError{})

	for i := range 3 {
		err := in.do(context.Background(), "resolver r", func(ctx context.Context, _ *pluginclient.Client) error {
			dl, _ := ctx.Deadline()
			if i == 2 {
				// Received in time, looked at after the deadline (a busy
				// machine): still an answer.
				time.Sleep(time.Until(dl) + 10*time.Millisecond)
			} else {
				time.Sleep(time.Until(dl) - deadlineSlack*3/4) // within the slack a cancellation gets
			}
			return answer
		})
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), `plugin "tp": resolver r: the plugin answered, within the 200ms call timeout, that it ran out of time: plugin call: `) {
			t.Fatalf("call %d = %v", i+1, err)
		}
		if in.callMisses.Load() != 0 || in.cur.Load() == nil {
			t.Fatalf("after call %d: %d misses, up: %v", i+1, in.callMisses.Load(), in.cur.Load() != nil)
		}
	}

	for i := range 2 {
		err := in.do(context.Background(), "resolver r", func(ctx context.Context, _ *pluginclient.Client) error {
			<-ctx.Done()
			if i == 1 {
				// The plugin's server reset the stream at its copy of the
				// deadline: gRPC says DEADLINE_EXCEEDED, no answer came.
				return fmt.Errorf("plugin call: stream terminated by RST_STREAM with error code: CANCEL: %w", context.DeadlineExceeded)
			}
			return fmt.Errorf("plugin call: %w", ctx.Err())
		})
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "no answer within the 200ms call timeout") {
			t.Fatalf("hung call %d = %v", i+1, err)
		}
	}
	if in.cur.Load() != nil {
		t.Error("still taking calls after MaxMisses calls got no answer")
	}
}

func TestHandshakeVersion(t *testing.T) {
	tests := []struct {
		line string
		want int
	}{
		{"1|1|unix|/tmp/plugin123|grpc|MIIB", 1},
		{"1|99|unix|/tmp/plugin123|grpc", 99},
		{"1| 2 |tcp|127.0.0.1:1234|grpc", 2},
		{"1|x|unix|/tmp/p|grpc", 0},
		{"1|-3|unix|/tmp/p|grpc", 0},
		{"1|2", 0},
		{"hello from a plugin that prints", 0},
		{"", 0},
	}
	for _, tt := range tests {
		if got := handshakeVersion([]byte(tt.line)); got != tt.want {
			t.Errorf("handshakeVersion(%q) = %d, want %d", tt.line, got, tt.want)
		}
	}
}

func TestProtocolVersionErrorUnreadable(t *testing.T) {
	err := &ProtocolVersionError{Plugin: "x", Path: "/p/x", Speaks: []int{1}, Err: pluginclient.ErrProtocolVersion}
	want := `plugin "x" (/p/x) offers an unreadable plugin protocol version, and this daemon speaks only version 1: rebuild the plugin with a spectroauth SDK that serves version 1`
	if err.Error() != want || !errors.Is(err, pluginclient.ErrProtocolVersion) {
		t.Errorf("Error() = %q, want %q", err.Error(), want)
	}
}
