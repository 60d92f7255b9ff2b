package server

// Fuzz targets for the parsers of the HTTP layer that take outside input.
// Each asserts properties of the result, not only that nothing panics.
// Seeds live in testdata/fuzz/<Target>/; `make fuzz-short` runs each target
// for a few seconds, `make fuzz` for longer.

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/go-hclog"

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

// FuzzCLIState: only states with the cli. prefix are claimed by the
// command-line flow (a Backstage state is hex and never has it), and what it
// accepts re-encodes to the same request.
func FuzzCLIState(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		req, ok := parseCLIState(s)
		if ok != strings.HasPrefix(s, cliStatePrefix) {
			t.Fatalf("parseCLIState(%q) ok = %v", s, ok)
		}
		if !ok || req.Nonce == "" {
			return
		}
		again, ok := parseCLIState(req.encode())
		if !ok || again != req {
			t.Fatalf("re-encoded CLI state: %+v, %v; want %+v", again, ok, req)
		}
		if _, isBackstage := fuzzStateServer().openState(s); isBackstage == nil {
			t.Fatalf("%q is both a CLI state and a Backstage state", s)
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

// FuzzLoopbackRedirect: a command-line redirect_uri that passes is plain
// http to a loopback IP literal with a port, and what the daemon builds from
// it (adding code and state) stays on that host.
func FuzzLoopbackRedirect(f *testing.F) {
	f.Fuzz(func(t *testing.T, raw, code, state string) {
		u, err := loopbackRedirect(raw)
		if err != nil {
			return
		}
		host, port, err := net.SplitHostPort(u.Host)
		if n, err2 := strconv.Atoi(port); err != nil || err2 != nil || n < 1 || n > 65535 {
			t.Fatalf("loopbackRedirect(%q) accepted host %q without a valid port", raw, u.Host)
		}
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			t.Fatalf("loopbackRedirect(%q) accepted non-loopback host %q", raw, host)
		}
		if u.Scheme != "http" || u.User != nil || u.Fragment != "" || u.Opaque != "" {
			t.Fatalf("loopbackRedirect(%q) = %#v", raw, u)
		}
		s := &Server{}
		rec := httptest.NewRecorder()
		s.redirectLoopback(rec, httptest.NewRequest(http.MethodGet, "/", nil), u, url.Values{"code": {code}, "state": {state}})
		loc, err := url.Parse(rec.Header().Get("Location"))
		if err != nil || loc.Scheme != "http" || loc.Host != u.Host || loc.User != nil {
			t.Fatalf("redirect from %q went to %q (%v)", raw, rec.Header().Get("Location"), err)
		}
		if loc.Query().Get("code") != code || loc.Query().Get("state") != state {
			t.Fatalf("redirect from %q lost code or state: %q", raw, loc.RawQuery)
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

// FuzzDescribeOAuthError: what the provider says about a refusal reaches the
// user bounded and without control characters.
func FuzzDescribeOAuthError(f *testing.F) {
	f.Fuzz(func(t *testing.T, code, desc string) {
		out := describeOAuthError(code, desc)
		if len(out) > 64+200+3 {
			t.Fatalf("description of %d bytes", len(out))
		}
		if i := strings.IndexFunc(out, func(r rune) bool { return r < 0x20 || r == 0x7f }); i >= 0 {
			t.Fatalf("control character in %q", out)
		}
	})
}

// FuzzOpenCLICode: a sealed one-time code that anyone altered never opens
// to anything but what was sealed; made-up codes never open, and a consent
// form (sealed for another purpose) never opens as a code. (Each fuzzing
// process seals its own code, with its own random ID, under the same key:
// any of them may open, with the sealed content.)
func FuzzOpenCLICode(f *testing.F) {
	s := &Server{cfg: Config{FlowKey: []byte(strings.Repeat("k", 32))}}
	orig := cliCode{Handle: "h", Challenge: "c", RedirectURI: "http://127.0.0.1:1/", Expires: time.Unix(1e9, 0).UTC()}
	sealed, _, err := s.sealCLI(orig, cliCodeAAD)
	if err != nil {
		f.Fatal(err)
	}
	consent, _, err := s.sealCLI(orig, cliConsentAAD)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, code string, pos uint16, b byte, mutateSealed bool) {
		if mutateSealed {
			raw := []byte(sealed)
			raw[int(pos)%len(raw)] ^= b
			code = string(raw)
			if b == 0xff {
				code = consent
			}
		}
		got, err := s.openCLI(code, cliCodeAAD)
		if err != nil {
			return
		}
		if code == consent {
			t.Fatal("a consent form opened as a code")
		}
		if got.ID == "" || got.Handle != orig.Handle || got.Challenge != orig.Challenge ||
			got.RedirectURI != orig.RedirectURI || !got.Expires.Equal(orig.Expires) {
			t.Fatalf("openCLI(%q) = %+v; only %+v was ever sealed", code, got, orig)
		}
	})
}

// FuzzCLITokenForm: no form a client makes up gets tokens from the
// command-line token route, and every refusal is an RFC 6749 error with a
// 400, never a server error.
func FuzzCLITokenForm(f *testing.F) {
	s := &Server{
		cfg: Config{FlowKey: []byte(strings.Repeat("k", 32))},
		log: hclog.NewNullLogger(),
		now: time.Now,
		lc:  fuzzLifecycle(time.Now, nil),
	}
	f.Fuzz(func(t *testing.T, contentType, body string) {
		r := httptest.NewRequest(http.MethodPost, "/api/auth/spectrocloud/cli/token", strings.NewReader(body))
		r.Header.Set("Content-Type", contentType)
		rec := httptest.NewRecorder()
		if err := s.cliToken(rec, r); err != nil {
			t.Fatalf("cliToken returned %v", err)
		}
		if rec.Code != http.StatusBadRequest {
			t.Fatalf("made-up form %q (%s) answered %d: %s", body, contentType, rec.Code, rec.Body)
		}
		var te map[string]string
		if err := json.Unmarshal(rec.Body.Bytes(), &te); err != nil {
			t.Fatalf("refusal is not JSON: %q", rec.Body)
		}
		switch te["error"] {
		case "invalid_request", "invalid_grant", "unsupported_grant_type":
		default:
			t.Fatalf("refusal has error %q", te["error"])
		}
		if rec.Body.Len() > 512 {
			t.Fatalf("refusal of %d bytes", rec.Body.Len())
		}
	})
}

// FuzzDeviceCodes: of a device sign-in under way, only its own user code
// (typed in any case, with any '-' and ' ') starts the sign-in, and no
// other device code than its own learns anything but invalid_grant.
func FuzzDeviceCodes(f *testing.F) {
	f.Fuzz(func(t *testing.T, typed, deviceGuess string) {
		d := newDeviceGrants(time.Second)
		deviceCode, userCode, err := d.add("development", fuzzNow)
		if err != nil {
			t.Fatal(err)
		}
		if n := normaliseUserCode(typed); normaliseUserCode(n) != n {
			t.Fatalf("normaliseUserCode is not idempotent on %q", typed)
		}
		g, ok, limited := d.enter("client", typed, false, fuzzNow)
		if limited {
			t.Fatal("one guess was rate-limited")
		}
		if ok != (normaliseUserCode(typed) == userCode) || (ok && g.userCode != userCode) {
			t.Fatalf("user code %q (the grant's is %q): ok = %v", typed, userCode, ok)
		}
		if deviceGuess == deviceCode {
			return
		}
		_, err = d.poll(deviceGuess, fuzzNow)
		var te *tokenError
		if !errors.As(err, &te) || te.Code != "invalid_grant" {
			t.Fatalf("device code %q (not the grant's) polled to %v", deviceGuess, err)
		}
	})
}
