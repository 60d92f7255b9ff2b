package server_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"maps"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spectroauth/spectroauth/host/internal/ratelimit"
	"github.com/spectroauth/spectroauth/host/session"
)

// countingOnce is the in-memory used-once behaviour, counting claims.
type countingOnce struct {
	claims atomic.Int64
	mu     sync.Mutex
	seen   map[string]bool
}

func (c *countingOnce) Claim(_ context.Context, id string, _, _ time.Time) (bool, error) {
	c.claims.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seen[id] {
		return false, nil
	}
	c.seen[id] = true
	return true, nil
}

// countingStore counts session writes.
type countingStore struct {
	session.Store
	writes atomic.Int64
}

func (s *countingStore) Put(ctx context.Context, k session.Key, v *session.Session) error {
	s.writes.Add(1)
	return s.Store.Put(ctx, k, v)
}

// Forged callbacks (a made-up state with a matching nonce cookie, a
// genuine state altered, a genuine state too old) cost nothing: no call to
// the provider's token endpoint, no used-once entry, no session write.
func TestForgedCallbacksCostNothing(t *testing.T) {
	once := &countingOnce{seen: map[string]bool{}}
	store := &countingStore{Store: session.NewMemoryStore(session.Options{})}
	f := newFixture(t, fixtureOptions{UsedOnce: once, Sessions: store, SignInLimit: ratelimit.NewPerClient(6000, 1000, 10, nil)})
	frameURL, _ := url.Parse(f.URL("/api/auth/spectrocloud/handler"))

	b := newBrowser(t)
	genuine, _ := url.Parse(authorize(t, f, b, popupQuery()))
	f.OP.ResetCounters()

	forge := func(v url.Values) string { return encodeHexState(v) }
	var forged []string
	for i := range 200 {
		n := "nonce-" + strconv.Itoa(i)
		forged = append(forged, forge(url.Values{"nonce": {n}, "env": {"development"}}))
	}
	st := decodeHexState(t, genuine.Query().Get("state"))
	st.Set("scope", "openid admin")
	forged = append(forged, forge(st))
	st = decodeHexState(t, genuine.Query().Get("state"))
	st.Set("sig", "AAAA")
	forged = append(forged, forge(st))

	for _, state := range forged {
		fb := newBrowser(t)
		nonce := decodeHexState(t, state).Get("nonce")
		fb.Client.Jar.SetCookies(frameURL, []*http.Cookie{{Name: "spectrocloud-nonce", Value: nonce, Path: "/api/auth/spectrocloud/handler"}})
		res := fb.Get(f.URL("/api/auth/spectrocloud/handler/frame?code=made-up&state=" + url.QueryEscape(state)))
		if res.StatusCode != http.StatusForbidden {
			t.Fatalf("forged state: %d, want 403", res.StatusCode)
		}
	}
	// A genuine state past the nonce cookie's lifetime.
	f.Advance(11 * time.Minute)
	if res := b.Get(genuine.String()); res.StatusCode != http.StatusForbidden {
		t.Fatalf("expired state: %d, want 403", res.StatusCode)
	}
	if c := f.OP.Counters(); c.Token != 0 {
		t.Errorf("token endpoint calls for forged callbacks = %d, want 0", c.Token)
	}
	if n := once.claims.Load(); n != 0 {
		t.Errorf("used-once claims for forged callbacks = %d, want 0", n)
	}
	if n := store.writes.Load(); n != 0 {
		t.Errorf("session writes for forged callbacks = %d, want 0", n)
	}

	// The daemon's own states still work.
	f.RealTime()
	signIn(t, f, newBrowser(t))
	if n := once.claims.Load(); n != 1 {
		t.Errorf("used-once claims for one sign-in = %d, want 1", n)
	}
}

// The command line's upstream state follows the same rule: a state the
// daemon did not make (made up, altered, stripped of its MAC, or too old),
// even with a matching nonce cookie, costs no provider call and no write.
func TestForgedCLICallbacksCostNothing(t *testing.T) {
	once := &countingOnce{seen: map[string]bool{}}
	store := &countingStore{Store: session.NewMemoryStore(session.Options{})}
	f := newFixture(t, fixtureOptions{UsedOnce: once, Sessions: store, SignInLimit: ratelimit.NewPerClient(6000, 1000, 10, nil)})
	frameURL, _ := url.Parse(f.URL("/api/auth/spectrocloud/handler"))
	l := newLoopback(t)

	res := newBrowser(t).Do(http.MethodGet, cliStartURL(f, l.RedirectURI(), "s", newPKCE("forged")), true)
	upstreamURL, err := url.Parse(res.Header.Get("Location"))
	if res.StatusCode != http.StatusFound || err != nil {
		t.Fatalf("cli/start: %d %v", res.StatusCode, err)
	}
	genuine := upstreamURL.Query().Get("state")
	body, sig, _ := strings.Cut(strings.TrimPrefix(genuine, "cli."), ".")
	raw, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil {
		t.Fatalf("the CLI state %q is not base64 JSON then a MAC: %v", genuine, err)
	}
	var req map[string]any
	if err := json.Unmarshal(raw, &req); err != nil {
		t.Fatal(err)
	}
	encode := func(m map[string]any) string {
		b, _ := json.Marshal(m)
		return "cli." + base64.RawURLEncoding.EncodeToString(b)
	}
	altered := maps.Clone(req)
	altered["r"] = "http://127.0.0.1:1/callback"
	madeUp := map[string]any{"n": "made-up", "e": req["e"], "r": l.RedirectURI(), "s": "s", "c": req["c"]}
	cases := map[string]string{
		"made up":             encode(madeUp),
		"made up with a MAC":  encode(madeUp) + "." + sig,
		"altered":             encode(altered) + "." + sig,
		"without its MAC":     encode(req),
		"with another MAC":    encode(req) + ".AAAA",
		"with a MAC appended": genuine + "." + sig,
	}
	f.OP.ResetCounters()
	for name, state := range cases {
		fb := newBrowser(t)
		nonce, _ := req["n"].(string)
		if name == "made up" || name == "made up with a MAC" {
			nonce = "made-up"
		}
		fb.Client.Jar.SetCookies(frameURL, []*http.Cookie{{Name: "spectrocloud-nonce", Value: nonce, Path: "/api/auth/spectrocloud/handler"}})
		res := fb.Get(f.URL("/api/auth/spectrocloud/handler/frame?code=made-up&state=" + url.QueryEscape(state)))
		if res.StatusCode != http.StatusForbidden {
			t.Errorf("%s: %d, want 403", name, res.StatusCode)
		}
	}
	// The genuine state past the nonce cookie's lifetime.
	f.Advance(11 * time.Minute)
	fb := newBrowser(t)
	fb.Client.Jar.SetCookies(frameURL, []*http.Cookie{{Name: "spectrocloud-nonce", Value: req["n"].(string), Path: "/api/auth/spectrocloud/handler"}})
	if res := fb.Get(f.URL("/api/auth/spectrocloud/handler/frame?code=made-up&state=" + url.QueryEscape(genuine))); res.StatusCode != http.StatusForbidden {
		t.Errorf("expired CLI state: %d, want 403", res.StatusCode)
	}
	if c := f.OP.Counters(); c.Token != 0 {
		t.Errorf("token endpoint calls for forged CLI callbacks = %d, want 0", c.Token)
	}
	if n := once.claims.Load(); n != 0 {
		t.Errorf("used-once claims for forged CLI callbacks = %d, want 0", n)
	}
	if n := store.writes.Load(); n != 0 {
		t.Errorf("session writes for forged CLI callbacks = %d, want 0", n)
	}
}
