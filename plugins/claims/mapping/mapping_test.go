package mapping

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/spectroauth/spectroauth/sdk"
)

// staff is the mapping of the README: users of example.com, named after
// their address, owning through their groups; only members of
// "backstage-users" may sign in.
func staff() map[string]any {
	return map[string]any{
		"match":               `has(claims.email) && claims.email.endsWith("@example.com")`,
		"policy":              `"backstage-users" in claims.?groups.orValue([])`,
		"userEntityRef":       `"user:default/" + claims.email.split("@")[0]`,
		"ownershipEntityRefs": `claims.?groups.orValue([]).filter(g, g != "backstage-users").map(g, "group:default/" + g)`,
		"examples": []any{
			map[string]any{
				"name":   "alice of the platform team",
				"claims": map[string]any{"email": "alice@example.com", "groups": []any{"backstage-users", "platform"}},
				"expect": map[string]any{
					"userEntityRef":       "user:default/alice",
					"ownershipEntityRefs": []any{"group:default/platform", "user:default/alice"},
				},
			},
			map[string]any{
				"name":         "bob is not a Backstage user",
				"claims":       map[string]any{"email": "bob@example.com", "groups": []any{"platform"}},
				"expectDenied": true,
			},
			map[string]any{
				"name":           "partners go to the next resolver",
				"claims":         map[string]any{"email": "eve@partner.example", "groups": []any{"backstage-users"}},
				"expectNotFound": true,
			},
			map[string]any{
				"name":           "an unverified address is not seen",
				"claims":         map[string]any{"email": "mallory@example.com", "email_verified": false, "groups": []any{"backstage-users"}},
				"expectNotFound": true,
			},
		},
	}
}

// contractors map the sub claim, without conditions.
func contractors() map[string]any {
	return map[string]any{
		"userEntityRef":       `"user:contractors/" + profile.subject`,
		"ownershipEntityRefs": `["group:contractors/all"]`,
	}
}

type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func configure(t testing.TB, values sdk.Options) (*Mapper, *logBuffer, error) {
	t.Helper()
	logs := &logBuffer{}
	m := New()
	m.Logger = hclog.New(&hclog.LoggerOptions{Name: "test", Level: hclog.Debug, Output: logs})
	err := m.Configure(context.Background(), sdk.Config{InstanceName: "test", Values: values})
	return m, logs, err
}

func mustConfigure(t testing.TB, values sdk.Options) (*Mapper, *logBuffer) {
	t.Helper()
	m, logs, err := configure(t, values)
	if err != nil {
		t.Fatalf("Configure: %v", err)
	}
	return m, logs
}

func request(mapping string, claims sdk.Claims) sdk.ResolveRequest {
	req := exampleRequest(claims)
	if mapping != "" {
		req.Options = sdk.Options{"mapping": mapping}
	}
	return req
}

func TestExamplesPass(t *testing.T) {
	_, logs := mustConfigure(t, sdk.Options{"mappings": map[string]any{"staff": staff(), "contractors": contractors()}})
	if !strings.Contains(logs.String(), `mapping has no examples`) || !strings.Contains(logs.String(), "contractors") {
		t.Errorf("a mapping without examples was not warned about:\n%s", logs)
	}
}

func TestFailingExampleFailsConfigure(t *testing.T) {
	for _, tc := range []struct {
		name    string
		example map[string]any
		says    string
	}{
		{"wrong user", map[string]any{"name": "carol", "claims": map[string]any{"email": "carol@example.com", "groups": []any{"backstage-users"}},
			"expect": map[string]any{"userEntityRef": "user:default/caroline"}}, `userEntityRef is "user:default/carol", want "user:default/caroline"`},
		{"wrong groups", map[string]any{"name": "carol", "claims": map[string]any{"email": "carol@example.com", "groups": []any{"backstage-users", "ops"}},
			"expect": map[string]any{"userEntityRef": "user:default/carol", "ownershipEntityRefs": []any{"group:default/dev"}}}, `ownershipEntityRefs are`},
		{"denied but found", map[string]any{"name": "carol", "claims": map[string]any{"email": "carol@example.com", "groups": []any{"backstage-users"}},
			"expectDenied": true}, `got the identity user:default/carol`},
		{"found but denied", map[string]any{"name": "carol", "claims": map[string]any{"email": "carol@example.com"},
			"expect": map[string]any{"userEntityRef": "user:default/carol"}}, `got a refusal by the policy`},
		{"not found but found", map[string]any{"name": "carol", "claims": map[string]any{"email": "carol@example.com", "groups": []any{"backstage-users"}},
			"expectNotFound": true}, `want not found`},
		{"error", map[string]any{"name": "carol", "claims": map[string]any{"email": "carol@example.com", "groups": "backstage-users"},
			"expectDenied": true}, `got the error`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := staff()
			m["examples"] = append(m["examples"].([]any), tc.example)
			_, _, err := configure(t, sdk.Options{"mappings": map[string]any{"staff": m}})
			var ce *sdk.ConfigError
			if !errors.As(err, &ce) || ce.Key != "mappings.staff.examples[4]" {
				t.Fatalf("got %v, want a *sdk.ConfigError naming mappings.staff.examples[4]", err)
			}
			if !strings.Contains(err.Error(), `example "carol" fails`) || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("error %q does not name the example and say %q", err, tc.says)
			}
		})
	}
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	with := func(key string, value any) sdk.Options {
		m := staff()
		if value == nil {
			delete(m, key)
		} else {
			m[key] = value
		}
		return sdk.Options{"mappings": map[string]any{"staff": m}}
	}
	example := func(e map[string]any) sdk.Options { return with("examples", []any{e}) }
	for _, tc := range []struct {
		name   string
		values sdk.Options
		key    string
		says   string
	}{
		{"no mappings", sdk.Options{}, "mappings", "required"},
		{"empty mappings", sdk.Options{"mappings": map[string]any{}}, "mappings", "required"},
		{"bad mapping name", sdk.Options{"mappings": map[string]any{"9lives": staff()}}, "mappings.9lives", "not a mapping name"},
		{"unknown top key", sdk.Options{"mappings": map[string]any{"staff": staff()}, "costlimit": 5}, "costlimit", "unknown key"},
		{"costLimit zero", sdk.Options{"mappings": map[string]any{"staff": staff()}, "costLimit": 0}, "costLimit", ""},
		{"timeout not a duration", sdk.Options{"mappings": map[string]any{"staff": staff()}, "timeout": 5}, "timeout", ""},
		{"no userEntityRef", with("userEntityRef", nil), "mappings.staff.userEntityRef", "required"},
		{"syntax error", with("userEntityRef", `"user:default/" +`), "mappings.staff.userEntityRef", "does not compile"},
		{"unknown variable", with("userEntityRef", `"user:default/" + user.name`), "mappings.staff.userEntityRef", "undeclared reference"},
		{"user ref not a string", with("userEntityRef", `1 + 2`), "mappings.staff.userEntityRef", "gives int, want string"},
		{"ownership not a list", with("ownershipEntityRefs", `"group:default/a"`), "mappings.staff.ownershipEntityRefs", "want list(string)"},
		{"ownership list of ints", with("ownershipEntityRefs", `[1, 2]`), "mappings.staff.ownershipEntityRefs", "want list(string)"},
		// dyn at compile time: the evaluation checks it, and the examples catch it.
		{"policy not a bool", with("policy", `claims.email`), "mappings.staff.examples[0]", "policy: gave string, want bool"},
		{"match not a bool", with("match", `"yes"`), "mappings.staff.match", "want bool"},
		{"unknown mapping key", with("owners", `[]`), "mappings.staff.owners", "unknown key"},
		{"examples not a list", with("examples", map[string]any{}), "mappings.staff.examples", ""},
		{"example without name", example(map[string]any{"claims": map[string]any{}, "expectDenied": true}), "mappings.staff.examples[0].name", "required"},
		{"example with two outcomes", example(map[string]any{"name": "x", "expectDenied": true, "expectNotFound": true}), "mappings.staff.examples[0]", "exactly one of"},
		{"example with none", example(map[string]any{"name": "x"}), "mappings.staff.examples[0]", "exactly one of"},
		{"example expecting a bad ref", example(map[string]any{"name": "x", "expect": map[string]any{"userEntityRef": "group:default/x"}}), "mappings.staff.examples[0].expect.userEntityRef", "want user"},
		{"example expecting a bad ownership ref", example(map[string]any{"name": "x", "expect": map[string]any{"userEntityRef": "user:default/x", "ownershipEntityRefs": []any{"team a"}}}), "mappings.staff.examples[0].expect.ownershipEntityRefs[0]", "no kind"},
		{"example with an unknown key", example(map[string]any{"name": "x", "expectDenied": true, "claim": map[string]any{}}), "mappings.staff.examples[0].claim", "unknown key"},
		{"example profile with an unknown key", example(map[string]any{"name": "x", "expectDenied": true, "profile": map[string]any{"mail": "a@b"}}), "mappings.staff.examples[0].profile.mail", "unknown key"},
		{"duplicate example names", with("examples", []any{
			map[string]any{"name": "x", "claims": map[string]any{"email": "x@partner.example"}, "expectNotFound": true},
			map[string]any{"name": "x", "claims": map[string]any{"email": "x@partner.example"}, "expectNotFound": true},
		}), "mappings.staff.examples[1].name", "another example"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := configure(t, tc.values)
			if tc.key == "" {
				if err != nil {
					t.Fatalf("got %v, want success", err)
				}
				return
			}
			var ce *sdk.ConfigError
			if !errors.As(err, &ce) || ce.Key != tc.key {
				t.Fatalf("got %v, want a *sdk.ConfigError naming %q", err, tc.key)
			}
			if !strings.Contains(err.Error(), tc.says) {
				t.Errorf("error %q does not say %q", err, tc.says)
			}
		})
	}
}

func TestResolve(t *testing.T) {
	m, _ := mustConfigure(t, sdk.Options{"mappings": map[string]any{"staff": staff(), "contractors": contractors()}})
	refused := func(says string) func(t *testing.T, id sdk.Identity, err error) {
		return func(t *testing.T, id sdk.Identity, err error) {
			var ie *sdk.InvalidInputError
			if !errors.As(err, &ie) || ie.Field != "Claims" || errors.Is(err, sdk.ErrNotFound) {
				t.Fatalf("got %+v, %v; want an *sdk.InvalidInputError on Claims", id, err)
			}
			if !strings.Contains(err.Error(), says) {
				t.Errorf("error %q does not say %q", err, says)
			}
		}
	}
	notFound := func(t *testing.T, id sdk.Identity, err error) {
		if !errors.Is(err, sdk.ErrNotFound) {
			t.Fatalf("got %+v, %v; want not found", id, err)
		}
	}
	found := func(user string, owns ...string) func(t *testing.T, id sdk.Identity, err error) {
		return func(t *testing.T, id sdk.Identity, err error) {
			if err != nil {
				t.Fatalf("got %v, want %s", err, user)
			}
			if err := id.Validate(); err != nil {
				t.Fatalf("invalid identity %+v: %v", id, err)
			}
			if id.UserEntityRef != user || !slices.Equal(id.OwnershipEntityRefs, append([]string{user}, owns...)) {
				t.Errorf("got %s owning %q, want %s owning %q", id.UserEntityRef, id.OwnershipEntityRefs, user, append([]string{user}, owns...))
			}
		}
	}
	for _, tc := range []struct {
		name  string
		req   sdk.ResolveRequest
		check func(t *testing.T, id sdk.Identity, err error)
	}{
		{"found", request("staff", sdk.Claims{"email": "alice@example.com", "groups": []any{"backstage-users", "platform", "sre", "platform"}}),
			found("user:default/alice", "group:default/platform", "group:default/sre")},
		{"match false", request("staff", sdk.Claims{"email": "eve@partner.example", "groups": []any{"backstage-users"}}), notFound},
		{"policy false", request("staff", sdk.Claims{"email": "bob@example.com", "groups": []any{"platform"}}), refused("refused by the mapping's policy")},
		{"group that is no entity name", request("staff", sdk.Claims{"email": "alice@example.com", "groups": []any{"backstage-users", "Platform Team"}}),
			refused(`ownershipEntityRefs[0]: not a valid Backstage entity ref`)},
		{"local part that is no entity name", request("staff", sdk.Claims{"email": "al ice@example.com", "groups": []any{"backstage-users"}}),
			refused(`userEntityRef: not a valid Backstage entity ref`)},
		{"claim of another type", request("staff", sdk.Claims{"email": "alice@example.com", "groups": "backstage-users"}), refused("mapping staff")},
		{"other mapping", request("contractors", sdk.Claims{"sub": "c-42"}), found("user:contractors/c-42", "group:contractors/all")},
		{"missing claim", request("contractors", sdk.Claims{}), refused("userEntityRef: not a valid")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := m.Resolve(context.Background(), tc.req)
			tc.check(t, id, err)
		})
	}

	// An unverified address is not in claims: the mapping does not apply.
	req := request("staff", sdk.Claims{"email": "alice@example.com", "groups": []any{"backstage-users"}})
	req.Profile.EmailVerified = false
	if _, err := m.Resolve(context.Background(), req); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("unverified address: got %v, want not found (match sees no email claim)", err)
	}

	// Options.
	var ce *sdk.ConfigError
	if _, err := m.Resolve(context.Background(), request("", sdk.Claims{})); !errors.As(err, &ce) || ce.Key != "mapping" || !strings.Contains(err.Error(), "contractors, staff") {
		t.Errorf("no mapping option with two mappings: got %v", err)
	}
	if _, err := m.Resolve(context.Background(), request("nobody", sdk.Claims{})); !errors.As(err, &ce) || ce.Key != "mapping" {
		t.Errorf("unknown mapping: got %v", err)
	}
	if err := m.ValidateOptions(context.Background(), sdk.ValidateOptionsRequest{Role: sdk.CapabilityResolver, Name: ResolverName, Options: sdk.Options{"mapping": "staff", "x": 1}}); !errors.As(err, &ce) || ce.Key != "x" {
		t.Errorf("unknown option: got %v", err)
	}
}

func TestSingleMappingNeedsNoOption(t *testing.T) {
	m, _ := mustConfigure(t, sdk.Options{"mappings": map[string]any{"contractors": contractors()}})
	id, err := m.Resolve(context.Background(), request("", sdk.Claims{"sub": "c-7"}))
	if err != nil || id.UserEntityRef != "user:contractors/c-7" {
		t.Errorf("got %+v, %v", id, err)
	}
}

func TestRefsAreCanonicalAndChecked(t *testing.T) {
	cfg := func(user, owns string) sdk.Options {
		return sdk.Options{"mappings": map[string]any{"m": map[string]any{"userEntityRef": user, "ownershipEntityRefs": owns}}}
	}
	m, _ := mustConfigure(t, cfg(`"User:default/" + claims.name`, `["Group:default/Team-A", "group:default/Team-A", "user:default/" + claims.name]`))
	id, err := m.Resolve(context.Background(), request("", sdk.Claims{"name": "Alice"}))
	if err != nil || id.UserEntityRef != "user:default/Alice" || !slices.Equal(id.OwnershipEntityRefs, []string{"user:default/Alice", "group:default/Team-A"}) {
		t.Errorf("got %+v, %v; want canonical, deduplicated refs", id, err)
	}
	m, _ = mustConfigure(t, cfg(`"group:default/" + claims.name`, `[]`))
	if _, err := m.Resolve(context.Background(), request("", sdk.Claims{"name": "alice"})); err == nil || !strings.Contains(err.Error(), `has kind "group", want user`) {
		t.Errorf("a group as user ref: got %v", err)
	}
	m, _ = mustConfigure(t, cfg(`claims.name`, `[]`))
	if _, err := m.Resolve(context.Background(), request("", sdk.Claims{"name": "alice"})); err == nil || !strings.Contains(err.Error(), "has no kind") {
		t.Errorf("a short ref: got %v", err)
	}

	var groups []any
	for i := range 100 {
		groups = append(groups, fmt.Sprintf("g%03d", i))
	}
	m, logs := mustConfigure(t, cfg(`"user:default/" + claims.name`, `claims.groups.map(g, "group:default/" + g)`))
	id, err = m.Resolve(context.Background(), request("", sdk.Claims{"name": "many", "groups": groups}))
	if err != nil || len(id.OwnershipEntityRefs) != sdk.MaxOwnershipEntityRefs || id.OwnershipEntityRefs[0] != "user:default/many" {
		t.Errorf("100 groups: got %d refs, %v", len(id.OwnershipEntityRefs), err)
	}
	if !strings.Contains(logs.String(), "more ownership refs than an identity can carry") {
		t.Errorf("dropping refs was not logged")
	}
}

func TestProfileVariables(t *testing.T) {
	m, _ := mustConfigure(t, sdk.Options{"mappings": map[string]any{"m": map[string]any{
		"policy":              `profile.emailVerified && profile.email == "a@example.com" && profile.displayName == "A" && profile.issuer.startsWith("https://")`,
		"userEntityRef":       `"user:default/" + profile.preferredUsername.lowerAscii()`,
		"ownershipEntityRefs": `profile.groups.map(g, "group:default/" + g)`,
		"examples": []any{map[string]any{
			"name":    "profile from the claims",
			"claims":  map[string]any{"email": "a@example.com", "name": "A", "iss": "https://idp.example", "preferred_username": "A1", "groups": []any{"g"}},
			"expect":  map[string]any{"userEntityRef": "user:default/a1", "ownershipEntityRefs": []any{"group:default/g"}},
			"profile": map[string]any{"picture": "https://idp.example/a.png"},
		}, map[string]any{
			"name":         "profile block overrides",
			"claims":       map[string]any{"email": "a@example.com", "name": "A", "iss": "https://idp.example", "preferred_username": "A1"},
			"profile":      map[string]any{"emailVerified": false},
			"expectDenied": true,
		}},
	}}})
	_ = m
}

func TestCostLimitAndTimeout(t *testing.T) {
	var groups []any
	for i := range 500 {
		groups = append(groups, fmt.Sprintf("group-%d", i))
	}
	m, _ := mustConfigure(t, sdk.Options{"costLimit": 1000, "mappings": map[string]any{"m": map[string]any{
		"userEntityRef":       `"user:default/x"`,
		"ownershipEntityRefs": `claims.groups.map(g, "group:default/" + g)`,
	}}})
	_, err := m.Resolve(context.Background(), request("", sdk.Claims{"groups": groups}))
	var ie *sdk.InvalidInputError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "cost limit exceeded") {
		t.Errorf("got %v, want an *sdk.InvalidInputError saying the cost limit was exceeded", err)
	}

	slow := sdk.Options{"costLimit": 100_000_000, "timeout": "10s", "mappings": map[string]any{"m": map[string]any{
		"userEntityRef": `lists.range(1000).map(i, lists.range(1000).map(j, i + j)).size() > 0 ? "user:default/x" : "user:default/y"`,
	}}}
	m, _ = mustConfigure(t, slow)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = m.Resolve(ctx, request("", sdk.Claims{}))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %v, want an error wrapping context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("a 5ms deadline stopped the evaluation after %s", d)
	}
	slow["timeout"] = "5ms"
	m, _ = mustConfigure(t, slow)
	if _, err = m.Resolve(context.Background(), request("", sdk.Claims{})); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("with timeout 5ms: got %v, want an error wrapping context.DeadlineExceeded", err)
	}
}

func TestResolveNeedsConfigure(t *testing.T) {
	if _, err := New().Resolve(context.Background(), request("", sdk.Claims{})); err == nil || !strings.Contains(err.Error(), "not configured") {
		t.Errorf("got %v", err)
	}
}

// Every Configure of the process compiles in one CEL environment, built in
// the background from Plugin: configurations configured at once, good and
// bad, keep apart, and a bad expression fails its Configure as ever.
func TestConfiguresShareOneEnvironment(t *testing.T) {
	_ = Plugin() // starts building the environment, as main does
	a, err := sharedEnv()
	if err != nil {
		t.Fatalf("building the CEL environment: %v", err)
	}
	if b, _ := sharedEnv(); a != b {
		t.Fatal("sharedEnv built a second environment")
	}
	good := sdk.Options{"mappings": map[string]any{"staff": staff(), "contractors": contractors()}}
	bad := staff()
	bad["userEntityRef"] = `"user:default/" + warm`
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			m, _, err := configure(t, good)
			if err != nil {
				t.Errorf("Configure: %v", err)
				return
			}
			id, err := m.Resolve(context.Background(), request("staff", sdk.Claims{"email": "alice@example.com", "groups": []any{"backstage-users"}}))
			if err != nil || id.UserEntityRef != "user:default/alice" {
				t.Errorf("Resolve: %+v, %v", id, err)
			}
		})
		wg.Go(func() {
			_, _, err := configure(t, sdk.Options{"mappings": map[string]any{"staff": bad}})
			var ce *sdk.ConfigError
			if !errors.As(err, &ce) || ce.Key != "mappings.staff.userEntityRef" || !strings.Contains(err.Error(), "undeclared reference") {
				t.Errorf("got %v, want mappings.staff.userEntityRef: undeclared reference", err)
			}
		})
	}
	wg.Wait()
}

// isMappingName accepts exactly what the pattern it replaces accepts.
func TestIsMappingNameMatchesItsPattern(t *testing.T) {
	re := regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]{0,62}$`)
	for _, s := range []string{"", "a", "Z", "0", "9lives", "-a", "_a", "a-", "a_b-C9", "staff", "a.b", "a b", "é", "a\n",
		"a" + strings.Repeat("b", 62), "a" + strings.Repeat("b", 63), "a" + strings.Repeat("-", 62),
	} {
		if got, want := isMappingName(s), re.MatchString(s); got != want {
			t.Errorf("isMappingName(%q) = %v, want %v", s, got, want)
		}
	}
}
