package cliauth

// Device authorization grant (RFC 8628), served by the daemon itself, for
// a command line without a local browser (over SSH, in a container):
//
//	POST {base}/api/auth/spectrocloud/cli/device_authorization [env=E]
//	  → device_code, user_code, verification_uri(_complete), expires_in, interval
//
// The program prints the URL and the user code; the user opens
// GET …/cli/device in any browser, enters the code (POST, CSRF-bound to that
// browser) and signs in with SpectroCloud there, exactly as for the loopback
// sign-in. Meanwhile the program polls
//
//	POST {base}/api/auth/spectrocloud/cli/token
//	     grant_type=urn:ietf:params:oauth:grant-type:device_code&device_code=…
//
// and gets authorization_pending, slow_down (polling faster than the
// interval adds 5 seconds to it), expired_token, access_denied, or the same
// tokens as the loopback sign-in. Device codes are 256 random bits, user
// codes 8 letters of a 20-letter alphabet (20^8 ≈ 2^34.6); both are single
// use and live DeviceCodeLifetime. Guessing is bounded: each client address
// may enter maxDeviceFailuresPerClient wrong codes per deviceFailureWindow,
// and all clients together maxDeviceFailuresGlobal, after which entries are
// refused until the window moves on. Grants live in this process's memory:
// behind replicas, route …/cli/device* and the device_code grant to one
// replica (or use the loopback sign-in).

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/spectroauth/spectroauth/host/internal/backstageerr"
	"github.com/spectroauth/spectroauth/host/internal/cliwire"
	"github.com/spectroauth/spectroauth/host/lifecycle"
)

// Device grant limits.
const (
	// DeviceCodeLifetime is how long a device code and its user code live.
	DeviceCodeLifetime = 10 * time.Minute
	// DefaultDeviceInterval is the polling interval the daemon asks for.
	DefaultDeviceInterval = 5 * time.Second
	// DeviceGrantType is the token request's grant_type (RFC 8628 3.4).
	DeviceGrantType = "urn:ietf:params:oauth:grant-type:device_code"
	// userCodeAlphabet: 20 consonants, no vowels (no words), no look-alikes.
	userCodeAlphabet = "BCDFGHJKLMNPQRSTVWXZ"
	userCodeLen      = 8
	// deviceFailureWindow is the window of the attempt limits.
	deviceFailureWindow = 10 * time.Minute
	// maxDeviceFailuresPerClient wrong user codes per client address per window.
	maxDeviceFailuresPerClient = 10
	// maxDeviceFailuresGlobal wrong user codes from all clients per window:
	// with N live codes a guesser's chance is at most N·1000/20^8 (N/25.6
	// million) per window.
	maxDeviceFailuresGlobal = 1000
	// maxDeviceStartsPerClient device authorizations per client per window.
	maxDeviceStartsPerClient = 30
	// maxDeviceGrants bounds the grants kept at once.
	maxDeviceGrants = 10000
	// slowDownStep is what slow_down adds to the interval (RFC 8628 3.5).
	slowDownStep = 5 * time.Second
)

// Device grant states.
const (
	devicePending  = iota // waiting for the user to enter the code
	deviceSigning         // the code was entered; the sign-in runs
	deviceApproved        // signed in: the next poll gets the tokens
	deviceDenied          // refused or failed
)

type deviceGrant struct {
	key      string // deviceKey of the device code
	userCode string // normalised
	env      string
	expires  time.Time
	interval time.Duration
	lastPoll time.Time
	state    int
	secret   string // the session's secret once approved
}

// deviceGrants holds the grants of this process and the attempt counters.
type deviceGrants struct {
	mu       sync.Mutex
	byKey    map[string]*deviceGrant
	byUser   map[string]*deviceGrant
	interval time.Duration
	failures attemptCounter
	starts   attemptCounter
}

func newDeviceGrants(interval time.Duration) *deviceGrants {
	if interval <= 0 {
		interval = DefaultDeviceInterval
	}
	return &deviceGrants{byKey: map[string]*deviceGrant{}, byUser: map[string]*deviceGrant{}, interval: interval}
}

// deviceKey is how grants are kept: a hash of the device code, so a dump of
// memory or logs of keys yields no device code.
func deviceKey(deviceCode string) string {
	sum := sha256.Sum256([]byte("spectroauth device code\x00" + deviceCode))
	return hex.EncodeToString(sum[:])
}

// normaliseUserCode upper-cases a typed user code and drops separators.
func normaliseUserCode(c string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '-' || r == ' ':
			return -1
		case 'a' <= r && r <= 'z':
			return r - 'a' + 'A'
		}
		return r
	}, c)
}

// newUserCode draws userCodeLen letters uniformly (rejection sampling).
func newUserCode() (string, error) {
	out := make([]byte, 0, userCodeLen)
	buf := make([]byte, 32)
	for len(out) < userCodeLen {
		if _, err := rand.Read(buf); err != nil {
			return "", err
		}
		for _, b := range buf {
			if int(b) < 256-256%len(userCodeAlphabet) && len(out) < userCodeLen {
				out = append(out, userCodeAlphabet[int(b)%len(userCodeAlphabet)])
			}
		}
	}
	return string(out), nil
}

// formatUserCode is XXXX-XXXX.
func formatUserCode(c string) string { return c[:4] + "-" + c[4:] }

// sweep drops grants expired for a lifetime (they answer expired_token
// until then). Call with mu held.
func (d *deviceGrants) sweep(now time.Time) {
	for k, g := range d.byKey {
		if now.After(g.expires.Add(DeviceCodeLifetime)) {
			delete(d.byKey, k)
			if d.byUser[g.userCode] == g {
				delete(d.byUser, g.userCode)
			}
		}
	}
}

// add keeps a new grant and returns its device code and user code.
func (d *deviceGrants) add(env string, now time.Time) (deviceCode, userCode string, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.sweep(now)
	if len(d.byKey) >= maxDeviceGrants {
		return "", "", backstageerr.New(http.StatusServiceUnavailable, backstageerr.NameServiceUnavailable, "Too many device sign-ins are under way; try again shortly", nil)
	}
	if deviceCode, err = randomToken(); err != nil {
		return "", "", err
	}
	for {
		if userCode, err = newUserCode(); err != nil {
			return "", "", fmt.Errorf("making a user code: %w", err)
		}
		if _, taken := d.byUser[userCode]; !taken {
			break
		}
	}
	g := &deviceGrant{key: deviceKey(deviceCode), userCode: userCode, env: env, expires: now.Add(DeviceCodeLifetime), interval: d.interval}
	d.byKey[g.key] = g
	d.byUser[userCode] = g
	return deviceCode, userCode, nil
}

// enter claims the pending grant of a typed user code for a sign-in, or
// refuses it (deny): a user code is answered once. ok is false for an
// unknown, expired or used code; limited is true when the caller may not
// guess now. Wrong codes count against the attempt limits either way.
func (d *deviceGrants) enter(client, typed string, deny bool, now time.Time) (g deviceGrant, ok, limited bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.failures.count("", now) >= maxDeviceFailuresGlobal || d.failures.count(client, now) >= maxDeviceFailuresPerClient {
		return deviceGrant{}, false, true
	}
	p, found := d.byUser[normaliseUserCode(typed)]
	if !found || p.state != devicePending || !now.Before(p.expires) {
		d.failures.add("", now)
		d.failures.add(client, now)
		return deviceGrant{}, false, false
	}
	p.state = deviceSigning
	if deny {
		p.state = deviceDenied
	}
	delete(d.byUser, p.userCode) // single use
	return *p, true, false
}

// finish records the sign-in's outcome: the session's secret, or "" for a
// refusal. It reports false when the grant is gone or expired.
func (d *deviceGrants) finish(key, secret string, now time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	g, ok := d.byKey[key]
	if !ok || g.state != deviceSigning || !now.Before(g.expires) {
		return false
	}
	if secret == "" {
		g.state = deviceDenied
	} else {
		g.state, g.secret = deviceApproved, secret
	}
	return true
}

// poll answers a device_code token request: the approved session's secret,
// or the RFC 8628 3.5 error. An approved or denied grant is answered once.
func (d *deviceGrants) poll(deviceCode string, now time.Time) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	g, ok := d.byKey[deviceKey(deviceCode)]
	if !ok {
		return "", invalidGrant("device_code is unknown or was already used", nil)
	}
	if !now.Before(g.expires) {
		return "", &tokenError{Code: "expired_token", Description: "the device code has expired; start the sign-in again", status: http.StatusBadRequest}
	}
	if !g.lastPoll.IsZero() && now.Sub(g.lastPoll) < g.interval {
		g.interval += slowDownStep
		g.lastPoll = now
		return "", &tokenError{Code: "slow_down", Description: fmt.Sprintf("poll at most every %d seconds", int(g.interval/time.Second)), status: http.StatusBadRequest}
	}
	g.lastPoll = now
	switch g.state {
	case deviceApproved:
		delete(d.byKey, g.key)
		return g.secret, nil
	case deviceDenied:
		delete(d.byKey, g.key)
		return "", &tokenError{Code: "access_denied", Description: "the sign-in was refused", status: http.StatusBadRequest}
	default:
		return "", &tokenError{Code: "authorization_pending", Description: "the user has not signed in yet", status: http.StatusBadRequest}
	}
}

// attemptCounter counts events per key in a sliding window; key "" is the
// global count.
type attemptCounter struct {
	times map[string][]time.Time
}

func (a *attemptCounter) prune(key string, now time.Time) []time.Time {
	ts := a.times[key]
	i := 0
	for i < len(ts) && now.Sub(ts[i]) >= deviceFailureWindow {
		i++
	}
	ts = ts[i:]
	if len(ts) == 0 {
		delete(a.times, key)
		return nil
	}
	a.times[key] = ts
	return ts
}

func (a *attemptCounter) count(key string, now time.Time) int {
	if a.times == nil {
		return 0
	}
	return len(a.prune(key, now))
}

func (a *attemptCounter) add(key string, now time.Time) {
	if a.times == nil {
		a.times = map[string][]time.Time{}
	}
	a.times[key] = append(a.prune(key, now), now)
}

// clientAddr is the caller's address for the attempt limits.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// deviceAuthorization answers POST cli/device_authorization.
func (h *Handler) deviceAuthorization(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(nil, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		h.writeTokenResponse(w, nil, &tokenError{Code: "invalid_request", Description: "the body must be a form", status: http.StatusBadRequest})
		return nil
	}
	env, err := h.cliEnv(r.PostForm.Get("env"))
	if err != nil {
		return err
	}
	now := h.now()
	h.device.mu.Lock()
	limited := h.device.starts.count(clientAddr(r), now) >= maxDeviceStartsPerClient
	if !limited {
		h.device.starts.add(clientAddr(r), now)
	}
	h.device.mu.Unlock()
	if limited {
		w.Header().Set("Retry-After", "60")
		h.writeTokenResponse(w, nil, &tokenError{Code: "slow_down", Description: "too many device sign-ins from this address; try again later", status: http.StatusTooManyRequests})
		return nil
	}
	deviceCode, userCode, err := h.device.add(env.Name(), now)
	if err != nil {
		return err
	}
	verify := h.authBase + "/" + lifecycle.ProviderID + "/cli/device"
	w.Header().Set("Cache-Control", "no-store")
	h.writeTokenResponse(w, &cliwire.DeviceAuthorization{
		DeviceCode: deviceCode, UserCode: formatUserCode(userCode),
		VerificationURI: verify, VerificationURIComplete: verify + "?" + url.Values{"user_code": {formatUserCode(userCode)}}.Encode(),
		ExpiresIn: int64(DeviceCodeLifetime / time.Second), Interval: int64(h.device.interval / time.Second),
	}, nil)
	return nil
}

// deviceTokens answers a device_code token request.
func (h *Handler) deviceTokens(r *http.Request) (*cliTokenResponse, error) {
	secret, err := h.device.poll(r.PostForm.Get("device_code"), h.now())
	if err != nil {
		return nil, err
	}
	return h.cliGrant(r.Context(), secret, 0)
}

const deviceCookie = lifecycle.ProviderID + "-device-csrf"

// devicePage asks for the code a device sign-in shows. Parsed on
// first use, not at every start of the daemon.
var devicePage = sync.OnceValue(func() *template.Template {
	return template.Must(template.New("device").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in a device — spectroauth</title></head>
<body><h1>Sign in a command-line program</h1>
{{if .Message}}<p><strong>{{.Message}}</strong></p>{{end}}
<p>Enter the code your terminal shows (spectroauthd login --device, or kubectl over SSH). You then sign
in with SpectroCloud, and that program gets Kubernetes credentials in your name. Enter a code only
if you started the command yourself.</p>
<form method="post" action="{{.Action}}">
<input type="hidden" name="csrf" value="{{.CSRF}}">
<label>Code <input name="user_code" value="{{.UserCode}}" autocomplete="off" autocapitalize="characters" spellcheck="false"></label>
<button type="submit" name="decision" value="allow">Continue</button>
<button type="submit" name="decision" value="deny">Deny</button>
</form></body></html>
`))
})

// writeDevicePage answers the verification page with a fresh CSRF cookie.
func (h *Handler) writeDevicePage(w http.ResponseWriter, env *lifecycle.Env, status int, userCode, message string) error {
	cookie, err := randomToken()
	if err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{
		Name: deviceCookie, Value: cookie, Path: h.cookiePath(env) + "/cli/device",
		MaxAge: int(DeviceCodeLifetime / time.Second), HttpOnly: true, Secure: h.cookieSecure(env), SameSite: http.SameSiteStrictMode,
	})
	setFormPageHeaders(w.Header(), "'self'")
	w.WriteHeader(status)
	return devicePage().Execute(w, map[string]string{
		"Action": h.cookiePath(env) + "/cli/device", "CSRF": h.lc.Derive("cli-device-csrf", cookie),
		"UserCode": userCode, "Message": message,
	})
}

// deviceVerify answers GET cli/device: the page where the user enters the code.
func (h *Handler) deviceVerify(w http.ResponseWriter, r *http.Request) error {
	env, err := h.cliEnv(r.URL.Query().Get("env"))
	if err != nil {
		return err
	}
	code := r.URL.Query().Get("user_code")
	if len(code) > 32 {
		code = ""
	}
	return h.writeDevicePage(w, env, http.StatusOK, code, "")
}

// deviceEnter answers POST cli/device: check the code and send the browser
// to SpectroCloud for the grant's sign-in.
func (h *Handler) deviceEnter(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(nil, r.Body, 16<<10)
	env, err := h.cliEnv(r.URL.Query().Get("env"))
	if err != nil {
		return err
	}
	if err := r.ParseForm(); err != nil {
		return h.writeDevicePage(w, env, http.StatusBadRequest, "", "The form is malformed.")
	}
	cookie := cookieValue(r, deviceCookie)
	if cookie == "" || !hmac.Equal([]byte(r.PostForm.Get("csrf")), []byte(h.lc.Derive("cli-device-csrf", cookie))) {
		return h.writeDevicePage(w, env, http.StatusForbidden, "", "This form was not served to this browser (CSRF check failed). Enter the code again.")
	}
	typed, now := r.PostForm.Get("user_code"), h.now()
	deny := r.PostForm.Get("decision") == "deny"
	g, ok, limited := h.device.enter(clientAddr(r), typed, deny, now)
	switch {
	case limited:
		h.log.Warn("device sign-in: too many wrong codes; refusing entries for now", "client", clientAddr(r))
		w.Header().Set("Retry-After", "600")
		return h.writeDevicePage(w, env, http.StatusTooManyRequests, "", "Too many wrong codes. Wait a few minutes, then try again.")
	case !ok:
		return h.writeDevicePage(w, env, http.StatusBadRequest, "", "That code is unknown, already used or has expired. Check the code in your terminal.")
	case deny:
		writeCLIPage(w, http.StatusOK, "Sign-in refused", "The command in your terminal was told so.")
		return nil
	}
	genv, found := h.lc.Envs()[g.env]
	if !found {
		h.device.finish(g.key, "", now)
		return h.writeDevicePage(w, env, http.StatusBadRequest, "", "That code's environment is no longer configured.")
	}
	return h.cliSignInUpstream(w, r, genv, cliRequest{Device: g.key})
}
