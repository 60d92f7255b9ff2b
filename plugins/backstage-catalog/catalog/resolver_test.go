package catalog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/spectroauth/spectroauth/sdk"
)

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// fakeClock is a settable clock for the cache.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type harness struct {
	cat   *Catalog
	fake  *fakeCatalog
	clock *fakeClock
	logs  *syncBuffer
}

// newHarness configures a Catalog against a fake catalog; extra config keys
// override the defaults.
func newHarness(t testing.TB, extra sdk.Options, entities ...map[string]any) *harness {
	t.Helper()
	h := &harness{fake: newFakeCatalog(t, entities...), clock: &fakeClock{now: time.Unix(1_700_000_000, 0)}, logs: &syncBuffer{}}
	h.cat = New()
	h.cat.Logger = hclog.New(&hclog.LoggerOptions{Name: "test", Level: hclog.Trace, Output: h.logs})
	h.cat.Now = h.clock.Now
	cfg := sdk.Options{"baseUrl": h.fake.baseURL(), "token": testToken, "timeout": "2s"}
	for k, v := range extra {
		cfg[k] = v
	}
	if err := h.cat.Configure(context.Background(), sdk.Config{InstanceName: "test", Values: cfg}); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	return h
}

func emailReq(resolver, email string, opts sdk.Options) sdk.ResolveRequest {
	return sdk.ResolveRequest{
		Resolver: resolver,
		Options:  opts,
		Profile:  sdk.Profile{Email: email, EmailVerified: true, DisplayName: "Someone"},
		Claims:   sdk.Claims{"email": email, "sub": "sub-1"},
		Subject:  "sub-1",
	}
}

func usernameReq(username string, opts sdk.Options) sdk.ResolveRequest {
	return sdk.ResolveRequest{
		Resolver:          ResolverPreferredUsername,
		Options:           opts,
		PreferredUsername: username,
		Claims:            sdk.Claims{"preferred_username": username, "sub": "sub-1"},
		Subject:           "sub-1",
	}
}

func (h *harness) resolve(t testing.TB, req sdk.ResolveRequest) (sdk.Identity, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	id, err := h.cat.Resolve(ctx, req)
	if err == nil {
		if verr := id.Validate(); verr != nil {
			t.Fatalf("Resolve returned an invalid identity %+v: %v", id, verr)
		}
	}
	return id, err
}

// outcome is what a case expects: an identity, not found, a refusal
// (*sdk.InvalidInputError on field) or another error containing text.
type outcome struct {
	user     string
	owns     []string
	notFound bool
	invalid  string
	errText  string
}

func check(t *testing.T, id sdk.Identity, err error, want outcome) {
	t.Helper()
	switch {
	case want.user != "":
		if err != nil {
			t.Fatalf("got error %v, want %s", err, want.user)
		}
		if id.UserEntityRef != want.user {
			t.Errorf("UserEntityRef = %q, want %q", id.UserEntityRef, want.user)
		}
		if want.owns != nil && !slices.Equal(id.OwnershipEntityRefs, want.owns) {
			t.Errorf("OwnershipEntityRefs = %q, want %q", id.OwnershipEntityRefs, want.owns)
		}
	case want.notFound:
		if !errors.Is(err, sdk.ErrNotFound) {
			t.Fatalf("got %v, %+v; want sdk.ErrNotFound", err, id)
		}
	case want.invalid != "":
		var ie *sdk.InvalidInputError
		if !errors.As(err, &ie) || ie.Field != want.invalid {
			t.Fatalf("got %v (%T), want an *sdk.InvalidInputError on %s", err, err, want.invalid)
		}
		if errors.Is(err, sdk.ErrNotFound) {
			t.Errorf("a refusal must not be not-found: %v", err)
		}
		if want.errText != "" && !strings.Contains(err.Error(), want.errText) {
			t.Errorf("error %q does not say %q", err, want.errText)
		}
	default:
		if err == nil {
			t.Fatalf("got %+v, want an error saying %q", id, want.errText)
		}
		var ie *sdk.InvalidInputError
		if errors.Is(err, sdk.ErrNotFound) || errors.As(err, &ie) {
			t.Errorf("got %v (%T), want a failure that is neither not-found nor invalid input", err, err)
		}
		if !strings.Contains(err.Error(), want.errText) {
			t.Errorf("error %q does not say %q", err, want.errText)
		}
	}
}

var jdoe = []string{"user:default/jdoe", "group:default/admins", "group:default/team-a"}

func TestEmailMatchingUserEntityProfileEmail(t *testing.T) {
	h := newHarness(t, nil)
	for _, tc := range []struct {
		name, email string
		want        outcome
	}{
		{"case variant of the catalog's address", "jdoe@example.com", outcome{user: "user:default/jdoe", owns: jdoe}},
		{"upper case", "JDOE@EXAMPLE.COM", outcome{user: "user:default/jdoe", owns: jdoe}},
		{"unicode, other case", "JÜRGEN.MÜLLER@example.com", outcome{user: "user:default/juergen", owns: []string{"user:default/juergen"}}},
		{"+tag retried without it", "tagged+backstage@example.com", outcome{user: "user:default/tagged", owns: []string{"user:default/tagged", "group:default/team-a"}}},
		{"exact +address wins over the retry", "plus+exact@example.com", outcome{user: "user:default/plusexact"}},
		{"other namespace", "jane@example.com", outcome{user: "user:ops/jane", owns: []string{"user:ops/jane", "group:ops/oncall"}}},
		{"group of that address is no user", "team-a@example.com", outcome{notFound: true}},
		{"unknown", "nobody@example.com", outcome{notFound: true}},
		{"unknown with +tag", "nobody+x@example.com", outcome{notFound: true}},
		{"duplicates", "shared@example.com", outcome{errText: `more than one User entity matches ("user:default/dup1" and "user:default/dup2")`}},
		{"duplicates through +tag", "SHARED+x@example.com", outcome{errText: "refusing to guess"}},
		{"not an address", "jdoe", outcome{invalid: "Profile.Email"}},
		{"comma cannot go into a filter", "a,kind=group@example.com", outcome{invalid: "Profile.Email"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := h.resolve(t, emailReq(ResolverProfileEmail, tc.email, nil))
			check(t, id, err, tc.want)
		})
	}
	if got := h.fake.filters(); !slices.Contains(got, "kind=user,spec.profile.email=tagged@example.com") {
		t.Errorf("filters sent %q: no retry without the +tag", got)
	}
}

func TestEmailLocalPartMatchingUserEntityName(t *testing.T) {
	h := newHarness(t, nil)
	for _, tc := range []struct {
		name, email string
		want        outcome
	}{
		{"local part names the user", "jdoe@anywhere.example", outcome{user: "user:default/jdoe", owns: jdoe}},
		{"case variant", "JDoe@example.com", outcome{user: "user:default/jdoe", owns: jdoe}},
		{"unicode local part cannot be a name", "jürgen@example.com", outcome{notFound: true}},
		{"+tag is kept, as Backstage keeps it", "tagged+x@example.com", outcome{notFound: true}},
		{"only the default namespace", "jane@example.com", outcome{notFound: true}},
		{"unknown", "nobody@example.com", outcome{notFound: true}},
		{"group name is no user", "team-a@example.com", outcome{notFound: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := h.resolve(t, emailReq(ResolverLocalPart, tc.email, nil))
			check(t, id, err, tc.want)
		})
	}
}

func TestEmailMatchingUserEntityAnnotation(t *testing.T) {
	h := newHarness(t, nil)
	custom := sdk.Options{"annotation": "corp.example.com/mail"}
	for _, tc := range []struct {
		name, email string
		opts        sdk.Options
		want        outcome
	}{
		{"default annotation", "jdoe@spectro.example", nil, outcome{user: "user:default/jdoe", owns: jdoe}},
		{"case and unicode", "JÜRGEN@SPECTRO.example", nil, outcome{user: "user:default/juergen"}},
		{"custom annotation", "John@corp.example.com", custom, outcome{user: "user:default/jdoe", owns: jdoe}},
		{"profile email is not the annotation", "jdoe@example.com", nil, outcome{notFound: true}},
		{"other annotation is not looked at", "jdoe@spectro.example", custom, outcome{notFound: true}},
		{"duplicates", "shared@spectro.example", nil, outcome{errText: "more than one User entity matches"}},
		{"unknown", "nobody@spectro.example", nil, outcome{notFound: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := h.resolve(t, emailReq(ResolverAnnotation, tc.email, tc.opts))
			check(t, id, err, tc.want)
		})
	}
	if got := h.fake.filters(); !slices.Contains(got, "kind=user,metadata.annotations.corp.example.com/mail=John@corp.example.com") {
		t.Errorf("filters sent %q: no lookup by the custom annotation", got)
	}
}

func TestPreferredUsernameMatchingUserEntityName(t *testing.T) {
	h := newHarness(t, nil)
	for _, tc := range []struct {
		name string
		req  sdk.ResolveRequest
		want outcome
	}{
		{"username names the user", usernameReq("jdoe", nil), outcome{user: "user:default/jdoe", owns: jdoe}},
		{"case variant", usernameReq("JDOE", nil), outcome{user: "user:default/jdoe", owns: jdoe}},
		{"from the claim alone", sdk.ResolveRequest{Resolver: ResolverPreferredUsername, Claims: sdk.Claims{"preferred_username": "asmith"}},
			outcome{user: "user:default/asmith", owns: []string{"user:default/asmith", "group:platform/sre"}}},
		{"an address cannot be a name", usernameReq("jdoe@example.com", nil), outcome{notFound: true}},
		{"unknown", usernameReq("nobody", nil), outcome{notFound: true}},
		{"missing", usernameReq("", nil), outcome{invalid: "PreferredUsername"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := h.resolve(t, tc.req)
			check(t, id, err, tc.want)
		})
	}
}

var emailResolvers = []string{ResolverProfileEmail, ResolverLocalPart, ResolverAnnotation}

// knownEmail is an address each e-mail resolver finds jdoe by.
var knownEmail = map[string]string{
	ResolverProfileEmail: "jdoe@example.com",
	ResolverLocalPart:    "jdoe@example.com",
	ResolverAnnotation:   "jdoe@spectro.example",
}

func TestUnverifiedEmailIsRefused(t *testing.T) {
	h := newHarness(t, nil)
	for _, name := range emailResolvers {
		t.Run(name, func(t *testing.T) {
			req := emailReq(name, knownEmail[name], nil)
			req.Profile.EmailVerified = false
			before := h.fake.requests.Load()
			id, err := h.resolve(t, req)
			check(t, id, err, outcome{invalid: "Profile.EmailVerified", errText: "verified"})
			req = emailReq(name, "", nil)
			id, err = h.resolve(t, req)
			check(t, id, err, outcome{invalid: "Profile.Email"})
			// The dangerous option does not sign in an unverified address.
			req = emailReq(name, knownEmail[name], sdk.Options{optDangerous: true})
			req.Profile.EmailVerified = false
			id, err = h.resolve(t, req)
			check(t, id, err, outcome{invalid: "Profile.EmailVerified"})
			if n := h.fake.requests.Load() - before; n != 0 {
				t.Errorf("asked the catalog %d times for an unverified address", n)
			}
		})
	}
}

func TestAllowedDomainsOnEveryResolver(t *testing.T) {
	h := newHarness(t, nil)
	allowed := sdk.Options{"allowedDomains": []any{"EXAMPLE.com", "spectro.example"}}
	refused := sdk.Options{"allowedDomains": []any{"other.example"}}
	dangerousRefused := sdk.Options{"allowedDomains": []any{"other.example"}, optDangerous: true}
	for _, name := range emailResolvers {
		t.Run(name, func(t *testing.T) {
			id, err := h.resolve(t, emailReq(name, knownEmail[name], allowed))
			check(t, id, err, outcome{user: "user:default/jdoe", owns: jdoe})
			upper := strings.ToUpper(knownEmail[name])
			id, err = h.resolve(t, emailReq(name, upper, allowed))
			check(t, id, err, outcome{user: "user:default/jdoe"})

			before := h.fake.requests.Load()
			for _, opts := range []sdk.Options{refused, dangerousRefused} {
				id, err = h.resolve(t, emailReq(name, knownEmail[name], opts))
				check(t, id, err, outcome{invalid: "Profile.Email", errText: "sign-in refused"})
			}
			if n := h.fake.requests.Load() - before; n != 0 {
				t.Errorf("asked the catalog %d times for a refused domain", n)
			}
		})
	}
	t.Run(ResolverPreferredUsername, func(t *testing.T) {
		req := usernameReq("jdoe", allowed)
		req.Profile = sdk.Profile{Email: "j.doe@example.com", EmailVerified: true}
		id, err := h.resolve(t, req)
		check(t, id, err, outcome{user: "user:default/jdoe", owns: jdoe})

		req.Options = dangerousRefused
		id, err = h.resolve(t, req)
		check(t, id, err, outcome{invalid: "Profile.Email", errText: "sign-in refused"})

		req.Profile.EmailVerified = false
		req.Options = allowed
		id, err = h.resolve(t, req)
		check(t, id, err, outcome{invalid: "Profile.EmailVerified"})

		id, err = h.resolve(t, usernameReq("jdoe", allowed))
		check(t, id, err, outcome{invalid: "Profile.Email"})
	})
}

func TestDangerouslyAllowSignInWithoutUserInCatalog(t *testing.T) {
	h := newHarness(t, nil)
	dangerous := sdk.Options{optDangerous: true}
	for _, tc := range []struct {
		name string
		req  sdk.ResolveRequest
		want outcome
	}{
		{"profile email", emailReq(ResolverProfileEmail, "newbie@example.com", dangerous), outcome{user: "user:default/newbie", owns: []string{"user:default/newbie"}}},
		{"profile email, +tag dropped", emailReq(ResolverProfileEmail, "newbie+work@example.com", dangerous), outcome{user: "user:default/newbie", owns: []string{"user:default/newbie"}}},
		{"local part", emailReq(ResolverLocalPart, "Newbie@example.com", dangerous), outcome{user: "user:default/Newbie", owns: []string{"user:default/Newbie"}}},
		{"annotation", emailReq(ResolverAnnotation, "newbie@spectro.example", dangerous), outcome{user: "user:default/newbie"}},
		{"preferred username", usernameReq("newbie", dangerous), outcome{user: "user:default/newbie", owns: []string{"user:default/newbie"}}},
		{"a catalog user still wins", emailReq(ResolverProfileEmail, "jdoe@example.com", dangerous), outcome{user: "user:default/jdoe", owns: jdoe}},
		{"duplicates are no not-found", emailReq(ResolverProfileEmail, "shared@example.com", dangerous), outcome{errText: "more than one User entity matches"}},
		{"name that cannot be a ref", emailReq(ResolverLocalPart, "jürgen@example.com", dangerous), outcome{invalid: "Profile.Email", errText: optDangerous}},
		{"username that cannot be a ref", usernameReq("a b", dangerous), outcome{invalid: "PreferredUsername"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := h.resolve(t, tc.req)
			check(t, id, err, tc.want)
		})
	}
	if !strings.Contains(h.logs.String(), "signing in a user who is not in the catalog") {
		t.Errorf("the dangerous fallback was not logged:\n%s", h.logs)
	}

	// Only "not found" falls back: a catalog that fails fails the sign-in.
	h.fake.set(func(f *fakeCatalog) { f.status = http.StatusServiceUnavailable })
	id, err := h.resolve(t, emailReq(ResolverProfileEmail, "other-newbie@example.com", dangerous))
	check(t, id, err, outcome{errText: "503"})
}

func TestCatalogDown(t *testing.T) {
	h := newHarness(t, nil)
	h.fake.set(func(f *fakeCatalog) { f.status = http.StatusServiceUnavailable })
	for _, name := range resolverNames {
		t.Run(name, func(t *testing.T) {
			req := emailReq(name, knownEmail[name], nil)
			if name == ResolverPreferredUsername {
				req = usernameReq("jdoe", nil)
			}
			id, err := h.resolve(t, req)
			check(t, id, err, outcome{errText: `answered GET /entities/by-`})
			if !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), `503 Service Unavailable ("ServiceUnavailableError: the catalog is being restarted")`) {
				t.Errorf("error %q does not name the resolver and the catalog's answer", err)
			}
		})
	}

	// Nothing listens: connection refused.
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	h2 := newHarness(t, sdk.Options{"baseUrl": url})
	id, err := h2.resolve(t, usernameReq("jdoe", nil))
	check(t, id, err, outcome{errText: "catalog request GET /entities/by-name/user/default/jdoe failed"})
}

func TestCatalogRefusesToken(t *testing.T) {
	h := newHarness(t, sdk.Options{"token": "wrong-secret-token"})
	id, err := h.resolve(t, emailReq(ResolverProfileEmail, "jdoe@example.com", nil))
	check(t, id, err, outcome{errText: "401 Unauthorized"})
	if !strings.Contains(err.Error(), "check the plugin's token") {
		t.Errorf("error %q does not point at the token", err)
	}
	for _, s := range []string{err.Error(), h.logs.String()} {
		if strings.Contains(s, "wrong-secret-token") {
			t.Errorf("the token leaked: %s", s)
		}
	}
}

func TestCatalogSlow(t *testing.T) {
	h := newHarness(t, sdk.Options{"timeout": "200ms"})
	h.fake.set(func(f *fakeCatalog) { f.hang = func(*http.Request) bool { return true } })

	start := time.Now()
	_, err := h.cat.Resolve(context.Background(), emailReq(ResolverProfileEmail, "jdoe@example.com", nil))
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "did not answer within 200ms") {
		t.Errorf("got %v, want the plugin's timeout, wrapping context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %s with a 200ms timeout", d)
	}

	// The caller's deadline (the daemon's callTimeout), when shorter, wins;
	// the plugin answers a little before it, saying why, so that the daemon
	// does not count a call that ran into its deadline.
	//
	// The caller's context only reports its deadline and is never done: a
	// real one would race the plugin's own answer, due 50ms earlier, and on
	// a loaded machine the goroutines that carry that answer can wake later
	// than that. What the plugin controls is the deadline of its request to
	// the catalog, so that is what the test checks.
	h = newHarness(t, sdk.Options{"timeout": "30s"})
	h.fake.set(func(f *fakeCatalog) { f.hang = func(*http.Request) bool { return true } })
	requestDeadlines := make(chan time.Time, 1)
	st := h.cat.state.Load()
	st.client.http.Transport = recordDeadline{next: st.client.http.Transport, deadlines: requestDeadlines}
	deadline := time.Now().Add(500 * time.Millisecond)
	_, err = h.cat.Resolve(deadlineOnly{Context: context.Background(), deadline: deadline}, usernameReq("jdoe", nil))
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "set the plugin's callTimeout") {
		t.Errorf("got %v, want an error wrapping context.DeadlineExceeded that points at callTimeout", err)
	}
	select {
	case dl := <-requestDeadlines:
		// lookupTimeout keeps at most 100ms for the answer to reach the
		// caller.
		if early := deadline.Sub(dl); early <= 0 || early > 100*time.Millisecond {
			t.Errorf("the catalog request's deadline is %s before the caller's, want a little (0 to 100ms) before it", early)
		}
	default:
		t.Errorf("the catalog request had no deadline")
	}
}

// deadlineOnly is a context that has a deadline but is never done, as if the
// caller's deadline never came: a lookup must end by itself before it.
type deadlineOnly struct {
	context.Context
	deadline time.Time
}

func (c deadlineOnly) Deadline() (time.Time, bool) { return c.deadline, true }

// recordDeadline sends the deadline of each request's context to deadlines,
// when there is room.
type recordDeadline struct {
	next      http.RoundTripper
	deadlines chan<- time.Time
}

func (r recordDeadline) RoundTrip(req *http.Request) (*http.Response, error) {
	if dl, ok := req.Context().Deadline(); ok {
		select {
		case r.deadlines <- dl:
		default:
		}
	}
	return r.next.RoundTrip(req)
}

func TestCache(t *testing.T) {
	h := newHarness(t, nil) // cacheTTL 60s, notFoundCacheTTL 10s
	req := emailReq(ResolverProfileEmail, "jdoe@example.com", nil)
	calls := func() int64 { return h.fake.requests.Load() }

	first, err := h.resolve(t, req)
	if err != nil || calls() != 1 {
		t.Fatalf("first resolve: %v, %d catalog calls", err, calls())
	}
	// Same user in another case: the catalog would answer the same.
	second, err := h.resolve(t, emailReq(ResolverProfileEmail, "JDOE@example.com", nil))
	if err != nil || calls() != 1 {
		t.Fatalf("cached resolve: %v, %d catalog calls, want 1", err, calls())
	}
	if !slices.Equal(first.OwnershipEntityRefs, second.OwnershipEntityRefs) {
		t.Errorf("cached identity %+v differs from %+v", second, first)
	}
	second.OwnershipEntityRefs[0] = "changed"
	if third, _ := h.resolve(t, req); third.OwnershipEntityRefs[0] != "user:default/jdoe" {
		t.Errorf("a caller changed the cached identity: %+v", third)
	}
	// Other options are another cache entry.
	if _, err := h.resolve(t, emailReq(ResolverProfileEmail, "jdoe@example.com", sdk.Options{"allowedDomains": []any{"example.com"}})); err != nil || calls() != 2 {
		t.Fatalf("resolve with other options: %v, %d catalog calls, want 2", err, calls())
	}

	h.clock.Advance(59 * time.Second)
	if _, err := h.resolve(t, req); err != nil || calls() != 2 {
		t.Fatalf("before expiry: %v, %d catalog calls, want 2", err, calls())
	}
	h.clock.Advance(2 * time.Second)
	if _, err := h.resolve(t, req); err != nil || calls() != 3 {
		t.Fatalf("after expiry: %v, %d catalog calls, want 3", err, calls())
	}

	// Not found is cached for notFoundCacheTTL.
	nobody := usernameReq("nobody", nil)
	for range 3 {
		if _, err := h.resolve(t, nobody); !errors.Is(err, sdk.ErrNotFound) {
			t.Fatalf("got %v, want not found", err)
		}
	}
	if calls() != 4 {
		t.Fatalf("%d catalog calls after three not-found lookups, want 4", calls())
	}
	h.clock.Advance(11 * time.Second)
	if _, err := h.resolve(t, nobody); !errors.Is(err, sdk.ErrNotFound) || calls() != 5 {
		t.Fatalf("not found after its TTL: %v, %d catalog calls, want 5", err, calls())
	}

	// Errors are not cached.
	h.fake.set(func(f *fakeCatalog) { f.status = http.StatusInternalServerError })
	fresh := usernameReq("asmith", nil)
	_, _ = h.resolve(t, fresh)
	h.fake.set(func(f *fakeCatalog) { f.status = 0 })
	if _, err := h.resolve(t, fresh); err != nil {
		t.Errorf("a catalog error was cached: %v", err)
	}
}

func TestCacheDisabledAndBounded(t *testing.T) {
	h := newHarness(t, sdk.Options{"cacheTTL": "0s"})
	for range 3 {
		if _, err := h.resolve(t, usernameReq("jdoe", nil)); err != nil {
			t.Fatal(err)
		}
	}
	if n := h.fake.requests.Load(); n != 3 {
		t.Errorf("cacheTTL 0: %d catalog calls for 3 sign-ins, want 3", n)
	}

	h = newHarness(t, sdk.Options{"cacheSize": 2})
	for _, u := range []string{"jdoe", "asmith", "tagged", "jdoe"} {
		if _, err := h.resolve(t, usernameReq(u, nil)); err != nil {
			t.Fatal(err)
		}
	}
	if n, size := h.fake.requests.Load(), h.cat.state.Load().cache.len(); n != 4 || size != 2 {
		t.Errorf("cacheSize 2: %d catalog calls (want 4: jdoe was evicted) and %d entries (want 2)", n, size)
	}
}

func TestConcurrentLookupsShareOneRequest(t *testing.T) {
	h := newHarness(t, nil)
	release := make(chan struct{})
	h.fake.set(func(f *fakeCatalog) {
		f.hang = func(*http.Request) bool { <-release; return false }
	})
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			id, err := h.cat.Resolve(context.Background(), emailReq(ResolverProfileEmail, "jdoe@example.com", nil))
			if err == nil && id.UserEntityRef != "user:default/jdoe" {
				err = fmt.Errorf("got %+v", id)
			}
			errs <- err
		})
	}
	time.Sleep(100 * time.Millisecond)
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if got := h.fake.requests.Load(); got != 1 {
		t.Errorf("%d concurrent sign-ins of one user cost %d catalog calls, want 1", n, got)
	}
}

func TestCatalogIgnoringTheFilterSignsNobodyIn(t *testing.T) {
	h := newHarness(t, nil)
	h.fake.set(func(f *fakeCatalog) { f.ignoreFilter = true })
	id, err := h.resolve(t, emailReq(ResolverProfileEmail, "jdoe@example.com", nil))
	check(t, id, err, outcome{errText: "which does not match it"})
}

func TestPagination(t *testing.T) {
	h := newHarness(t, nil)
	h.fake.set(func(f *fakeCatalog) { f.pageSize = 1 })
	id, err := h.resolve(t, emailReq(ResolverProfileEmail, "shared@example.com", nil))
	check(t, id, err, outcome{errText: "more than one User entity matches"})
	id, err = h.resolve(t, emailReq(ResolverProfileEmail, "jdoe@example.com", nil))
	check(t, id, err, outcome{user: "user:default/jdoe", owns: jdoe})
}

func TestRedirectToAnotherHostIsRefused(t *testing.T) {
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("followed a redirect to another host, with Authorization %q", r.Header.Get("Authorization"))
	}))
	defer other.Close()
	h := newHarness(t, nil)
	h.fake.set(func(f *fakeCatalog) { f.redirect = other.URL + "/api/catalog/entities/by-name/user/default/jdoe" })
	id, err := h.resolve(t, usernameReq("jdoe", nil))
	check(t, id, err, outcome{errText: "another host"})
}

func TestOwnershipRefsAreBounded(t *testing.T) {
	var groups []string
	for i := range 100 {
		groups = append(groups, fmt.Sprintf("group:default/g%03d", i))
	}
	h := newHarness(t, nil, userEntity("many", "many@example.com", groups...))
	id, err := h.resolve(t, emailReq(ResolverProfileEmail, "many@example.com", nil))
	check(t, id, err, outcome{user: "user:default/many"})
	if len(id.OwnershipEntityRefs) != sdk.MaxOwnershipEntityRefs || id.OwnershipEntityRefs[0] != "user:default/many" {
		t.Errorf("got %d ownership refs starting with %q, want %d starting with the user", len(id.OwnershipEntityRefs), id.OwnershipEntityRefs[0], sdk.MaxOwnershipEntityRefs)
	}
	if !strings.Contains(h.logs.String(), "more groups than an identity can carry") {
		t.Errorf("dropping groups was not logged")
	}
}

func TestCatalogUserWithInvalidName(t *testing.T) {
	h := newHarness(t, nil, userEntity("not valid", "odd@example.com"))
	id, err := h.resolve(t, emailReq(ResolverProfileEmail, "odd@example.com", nil))
	check(t, id, err, outcome{errText: "has no valid entity ref"})
}

func TestResolveNeedsConfigure(t *testing.T) {
	if _, err := New().Resolve(context.Background(), usernameReq("jdoe", nil)); err == nil || !strings.Contains(err.Error(), "not configured") {
		t.Errorf("got %v, want an error saying the plugin is not configured", err)
	}
}

func TestBadOptionsAtResolve(t *testing.T) {
	h := newHarness(t, nil)
	_, err := h.resolve(t, emailReq(ResolverProfileEmail, "jdoe@example.com", sdk.Options{"annotation": "x"}))
	var ce *sdk.ConfigError
	if !errors.As(err, &ce) || ce.Key != "annotation" {
		t.Errorf("got %v, want a *sdk.ConfigError naming annotation (not an option of %s)", err, ResolverProfileEmail)
	}
}
