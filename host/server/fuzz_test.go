package server

// Fuzz targets for the parsers of the HTTP layer that take outside input.
// Each asserts properties of the result, not only that nothing panics.
// Seeds live in testdata/fuzz/<Target>/; `make fuzz-short` runs each target
// for a few seconds, `make fuzz` for longer.

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http/httptest"
	"net/url"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/spectroauth/spectroauth/host/identity"
	"github.com/spectroauth/spectroauth/host/internal/backstageerr"
	"github.com/spectroauth/spectroauth/host/lifecycle"
	"github.com/spectroauth/spectroauth/host/session"
)

// fuzzNow is the clock of the state targets, so a state is deterministic.
var fuzzNow = time.Unix(1_800_000_000, 0)

func fuzzStateServer() *Server {
	now := func() time.Time { return fuzzNow }
	return &Server{cfg: Config{FlowKey: []byte(strings.Repeat("k", 32))}, now: now, lc: fuzzLifecycle(now, nil)}
}

// fuzzLifecycle is a session lifecycle for the fuzz targets: the test flow
// key, an environment that is never called, store (nil: in memory).
func fuzzLifecycle(now func() time.Time, store session.Store) *lifecycle.Manager {
	iss, err := identity.New(identity.Config{Issuer: "http://127.0.0.1/api/auth", KeyStore: identity.NewMemoryKeyStore(), Now: now})
	if err != nil {
		panic(err)
	}
	if store == nil {
		store = session.NewMemoryStore(session.Options{SweepInterval: -1})
	}
	m, err := lifecycle.New(lifecycle.Config{
		Envs:     map[string]*Env{"development": {SessionDuration: time.Hour}},
		Identity: iss, Sessions: store, FlowKey: []byte(strings.Repeat("k", 32)), Now: now,
	})
	if err != nil {
		panic(err)
	}
	return m
}

// genuineState is the state /start makes for a popup sign-in.
var genuineState = oauthState{Nonce: "n0nce", Env: "development", Origin: "http://localhost:3000", Flow: "popup", Scope: "openid profile email", Issued: fuzzNow}

// FuzzOpenState: the OAuth state is authenticated, so a state anyone made
// up or altered is refused (as the user's problem, never a 5xx), and one that
// opens carries exactly what the daemon sealed. The fuzzer gets a genuine
// state to mutate, or writes its own.
func FuzzOpenState(f *testing.F) {
	s := fuzzStateServer()
	genuine := s.encodeState(genuineState)
	f.Fuzz(func(t *testing.T, raw string, pos uint16, b byte, mutate bool) {
		if mutate {
			m := []byte(genuine)
			m[int(pos)%len(m)] ^= b
			raw = string(m)
		}
		st, err := s.openState(raw)
		if err != nil {
			if ae := backstageerr.As(err); ae.Status >= 500 {
				t.Fatalf("openState(%q) = %v, a server error", raw, err)
			}
			return
		}
		if st != genuineState {
			t.Fatalf("openState(%q) = %+v; only %+v was ever sealed", raw, st, genuineState)
		}
	})
}

// FuzzStateRoundTrip: whatever /start puts into the state, the callback reads
// back exactly, and the state is plain hex (safe in any URL).
func FuzzStateRoundTrip(f *testing.F) {
	s := fuzzStateServer()
	f.Fuzz(func(t *testing.T, nonce, env, origin, redirectURL, flow, scope string) {
		in := oauthState{Nonce: nonce, Env: env, Origin: origin, RedirectURL: redirectURL, Flow: flow, Scope: scope, Issued: fuzzNow}
		enc := s.encodeState(in)
		if strings.Trim(enc, "0123456789abcdef") != "" {
			t.Fatalf("state %q is not lowercase hex", enc)
		}
		out, err := s.openState(enc)
		if nonce == "" || env == "" {
			if err == nil {
				t.Fatalf("state without nonce or env accepted: %+v", out)
			}
			return
		}
		if len(enc) > 16<<10 {
			return // longer than openState takes; /start never makes one
		}
		if err != nil || out != in {
			t.Fatalf("openState(encodeState(%+v)) = %+v, %v", in, out, err)
		}
	})
}

// The policy the origin targets check against: the app's origin exactly,
// plus https subdomains of example.com.
const (
	fuzzApp     = "http://localhost:3000"
	fuzzPattern = "https://*.example.com"
)

// FuzzNormalizeOrigin: normalizeOrigin is idempotent, gives a bare
// scheme://host[:port], and the policy built from it lets through only the
// app's origin and what the glob names.
func FuzzNormalizeOrigin(f *testing.F) {
	policy, err := newOriginPolicy(fuzzApp, []string{fuzzPattern})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		o, err := normalizeOrigin(raw)
		if err != nil {
			return
		}
		if again, err := normalizeOrigin(o); err != nil || again != o {
			t.Fatalf("normalizeOrigin(%q) = %q, but normalizeOrigin(%q) = %q, %v", raw, o, o, again, err)
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
			u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" || strings.HasSuffix(o, ":") {
			t.Fatalf("normalizeOrigin(%q) = %q, not a bare http(s) origin (%v)", raw, o, err)
		}
		if (u.Scheme == "http" && u.Port() == "80") || (u.Scheme == "https" && u.Port() == "443") {
			t.Fatalf("normalizeOrigin(%q) = %q keeps the default port", raw, o)
		}
		if !policy.allowed(o) {
			return
		}
		if o == fuzzApp {
			return
		}
		host := strings.ToLower(u.Host)
		if u.Scheme != "https" || u.Port() != "" || !strings.HasSuffix(host, ".example.com") ||
			strings.ContainsAny(strings.TrimSuffix(host, ".example.com"), "/?#@") {
			t.Fatalf("policy {%s, %s} allows %q (from %q)", fuzzApp, fuzzPattern, o, raw)
		}
	})
}

// FuzzOriginGlob: a '*' never matches a '/', and a pattern without '*'
// matches only itself (case aside).
func FuzzOriginGlob(f *testing.F) {
	f.Fuzz(func(t *testing.T, pattern, origin string) {
		re, err := compileOriginGlob(pattern)
		if err != nil {
			return
		}
		if !re.MatchString(origin) {
			return
		}
		if strings.Count(origin, "/") != strings.Count(strings.ReplaceAll(pattern, "*", ""), "/") {
			t.Fatalf("pattern %q matched %q across a '/'", pattern, origin)
		}
		if !strings.Contains(pattern, "*") && !strings.EqualFold(pattern, origin) && utf8.ValidString(origin) && utf8.ValidString(pattern) {
			t.Fatalf("pattern %q without '*' matched %q", pattern, origin)
		}
	})
}

// FuzzParseRedirectURL: the redirect flow's return address is an absolute
// http(s) URL on an allowed origin, or it is refused as the user's problem.
func FuzzParseRedirectURL(f *testing.F) {
	policy, err := newOriginPolicy(fuzzApp, []string{fuzzPattern})
	if err != nil {
		f.Fatal(err)
	}
	s := &Server{origins: policy}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := s.parseRedirectURL(raw)
		if err != nil {
			if ae := backstageerr.As(err); ae.Status >= 500 {
				t.Fatalf("parseRedirectURL(%q) = %v, a server error", raw, err)
			}
			return
		}
		o, err := normalizeOrigin(u.String())
		if err != nil || !policy.allowed(o) {
			t.Fatalf("parseRedirectURL(%q) accepted %q, whose origin %q (%v) is not allowed", raw, u, o, err)
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			t.Fatalf("parseRedirectURL(%q) accepted scheme %q", raw, u.Scheme)
		}
	})
}

var (
	frameLiteral = regexp.MustCompile(`decodeURIComponent\('([^']*)'\)`)
	// What may appear inside the single-quoted literals: encodeURIComponent's
	// output, minus the quote.
	frameLiteralChars = regexp.MustCompile(`^[A-Za-z0-9\-_.!~*()%]*$`)
	percentEscape     = regexp.MustCompile(`%[0-9A-F]{2}`)
)

// FuzzFramePage: whatever the error message and target origin, the frame
// page is one script element whose string literals hold only
// encodeURIComponent characters, the CSP hash is that script's, and
// decoding the literals as the browser does recovers the same JSON message
// and origin.
func FuzzFramePage(f *testing.F) {
	f.Fuzz(func(t *testing.T, name, message, origin, email string) {
		msg := webMessage{Type: "authorization_response"}
		if email != "" {
			msg.Response = &authResponse{Profile: profile{Email: email, DisplayName: name}}
		} else {
			msg.Error = &backstageerr.Detail{Name: name, Message: message}
		}
		rec := httptest.NewRecorder()
		writeWebMessage(rec, origin, msg)
		body := rec.Body.String()
		script, ok := strings.CutPrefix(body, "<html><body><script>")
		if !ok {
			t.Fatalf("page does not start with its script: %q", body)
		}
		script, ok = strings.CutSuffix(script, "</script></body></html>")
		if !ok {
			t.Fatalf("page does not end with its script: %q", body)
		}
		// No '<' at all: nothing can close the element or open a comment.
		if strings.Contains(script, "<") {
			t.Fatalf("script contains '<': %q", script)
		}
		sum := sha256.Sum256([]byte(script))
		if want := "script-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"; rec.Header().Get("Content-Security-Policy") != want {
			t.Fatalf("CSP %q does not allow the script (want %q)", rec.Header().Get("Content-Security-Policy"), want)
		}
		lits := frameLiteral.FindAllStringSubmatch(script, -1)
		if len(lits) != 2 {
			t.Fatalf("script has %d literals, want 2: %q", len(lits), script)
		}
		decoded := make([]string, 2)
		for i, l := range lits {
			if !frameLiteralChars.MatchString(l[1]) {
				t.Fatalf("literal %q has characters encodeURIComponent does not produce", l[1])
			}
			// decodeURIComponent: %XX escapes only, and it throws on
			// invalid UTF-8.
			d := percentEscape.ReplaceAllStringFunc(l[1], func(e string) string {
				v, _ := url.PathUnescape(e)
				return v
			})
			if strings.Contains(d, "%") && strings.Count(d, "%") != strings.Count(l[1], "%25") {
				t.Fatalf("literal %q has a stray %%", l[1])
			}
			decoded[i] = d
		}
		if !utf8.ValidString(decoded[0]) {
			t.Fatalf("message literal decodes to invalid UTF-8; decodeURIComponent would throw")
		}
		if decoded[1] != origin {
			t.Fatalf("origin %q came back as %q", origin, decoded[1])
		}
		var got webMessage
		if err := json.Unmarshal([]byte(decoded[0]), &got); err != nil {
			t.Fatalf("message literal is not JSON: %v: %q", err, decoded[0])
		}
		if utf8.ValidString(name) && utf8.ValidString(message) && utf8.ValidString(email) && !reflect.DeepEqual(got, msg) {
			t.Fatalf("message %+v came back as %+v", msg, got)
		}
	})
}
