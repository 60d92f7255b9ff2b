package cliauth

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/spectroauth/spectroauth/host/identity"
	"github.com/spectroauth/spectroauth/host/lifecycle"
	"github.com/spectroauth/spectroauth/host/session"
)

// fuzzNow is the fuzz targets' clock.
var fuzzNow = time.Unix(1_800_000_000, 0)

// fuzzHandler is the command-line routes over a lifecycle with the test
// flow key and an environment that is never called, sessions in memory.
func fuzzHandler() *Handler {
	iss, err := identity.New(identity.Config{Issuer: "http://127.0.0.1/api/auth", KeyStore: identity.NewMemoryKeyStore()})
	if err != nil {
		panic(err)
	}
	lc, err := lifecycle.New(lifecycle.Config{
		Envs:     map[string]*lifecycle.Env{"development": {SessionDuration: time.Hour}},
		Identity: iss, Sessions: session.NewMemoryStore(session.Options{SweepInterval: -1}),
		FlowKey: []byte(strings.Repeat("k", 32)),
	})
	if err != nil {
		panic(err)
	}
	return &Handler{lc: lc, log: hclog.NewNullLogger()}
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
		if _, err := hex.DecodeString(s); err == nil {
			t.Fatalf("%q is both a CLI state and a Backstage state (hex)", s)
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
		s := &Handler{}
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

// FuzzOpenCLICode: a sealed one-time code that anyone altered never opens
// to anything but what was sealed; made-up codes never open, and a consent
// form (sealed for another purpose) never opens as a code. (Each fuzzing
// process seals its own code, with its own random ID, under the same key:
// any of them may open, with the sealed content.)
func FuzzOpenCLICode(f *testing.F) {
	s := fuzzHandler()
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
	s := fuzzHandler()
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
