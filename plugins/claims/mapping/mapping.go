package mapping

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"cel.dev/cel-go/cel"
	"github.com/hashicorp/go-hclog"

	"github.com/spectroauth/spectroauth/sdk"
)

// Defaults and bounds of the configuration.
const (
	// DefaultCostLimit bounds the work of one evaluation of one
	// expression, in CEL's cost units (about one per operation, more for
	// work proportional to the size of strings and lists).
	DefaultCostLimit = 100_000
	// DefaultTimeout bounds the evaluation of a mapping's expressions for
	// one sign-in.
	DefaultTimeout = 100 * time.Millisecond

	maxCostLimit = 100_000_000
	maxTimeout   = 10 * time.Second
)

// Config is the plugin's configuration, checked and compiled.
type Config struct {
	// Mappings are the mappings by name.
	Mappings map[string]*Mapping
	// CostLimit bounds one evaluation of one expression.
	CostLimit uint64
	// Timeout bounds the evaluation of a mapping for one sign-in.
	Timeout time.Duration
}

// Mapping turns claims into a Backstage identity with CEL expressions.
type Mapping struct {
	// Name is the mapping's key under `mappings:`.
	Name string
	// match, when set, decides whether the mapping applies (false: not
	// found); policy, when set, whether a user it applies to may sign in
	// (false: refused).
	match, policy *expr
	// user gives the user's entity ref; owns, when set, the ownership refs.
	user, owns *expr
	// examples are checked at Configure.
	examples []example
}

// Outcome of an example.
type expectation int

const (
	expectIdentity expectation = iota
	expectDenied
	expectNotFound
)

// example is an input and the outcome the mapping must have for it.
type example struct {
	name   string
	key    string // config key path, for messages
	req    sdk.ResolveRequest
	expect expectation
	user   string   // canonical, for expectIdentity
	owns   []string // canonical and sorted, with user; nil: not checked
}

// errDenied is wrapped by the refusal of a mapping's policy.
var errDenied = errors.New("sign-in refused by the mapping's policy")

// isMappingName reports whether s is a mapping name:
// ^[A-Za-z][A-Za-z0-9_-]{0,62}$, checked by hand: compiling that pattern
// at package initialisation was a share of every start of the plugin.
func isMappingName(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i := range len(s) {
		c := s[i]
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !letter && (i == 0 || !(c >= '0' && c <= '9' || c == '_' || c == '-')) {
			return false
		}
	}
	return true
}

// ParseConfig checks and compiles the plugin's `config:` block. Errors are
// *sdk.ConfigError values naming the key.
func ParseConfig(values sdk.Options) (*Config, error) {
	if err := values.RejectUnknown("mappings", "costLimit", "timeout"); err != nil {
		return nil, err
	}
	cfg := &Config{Mappings: map[string]*Mapping{}}
	limit, err := values.Int("costLimit", DefaultCostLimit)
	if err != nil {
		return nil, err
	}
	if limit < 1 || limit > maxCostLimit {
		return nil, sdk.ConfigErrorf("costLimit", "is %d, want 1 to %d", limit, maxCostLimit)
	}
	cfg.CostLimit = uint64(limit)
	if cfg.Timeout, err = values.Duration("timeout", DefaultTimeout); err != nil {
		return nil, err
	}
	if cfg.Timeout < time.Millisecond || cfg.Timeout > maxTimeout {
		return nil, sdk.ConfigErrorf("timeout", "is %s, want 1ms to %s", cfg.Timeout, maxTimeout)
	}
	mappings, err := values.Sub("mappings")
	if err != nil {
		return nil, err
	}
	if len(mappings) == 0 {
		return nil, sdk.ConfigErrorf("mappings", "is required: define at least one mapping")
	}
	env, err := sharedEnv()
	if err != nil {
		return nil, fmt.Errorf("building the CEL environment: %w", err)
	}
	for _, name := range slices.Sorted(maps.Keys(mappings)) {
		key := "mappings." + name
		if !isMappingName(name) {
			return nil, sdk.ConfigErrorf(key, "%q is not a mapping name: a letter, then up to 62 letters, digits, '-' or '_'", name)
		}
		block, err := mappings.Sub(name)
		if err != nil {
			return nil, err
		}
		m, err := parseMapping(env, name, block, cfg.CostLimit)
		if err != nil {
			return nil, sdk.PrefixKey(key, err)
		}
		cfg.Mappings[name] = m
	}
	return cfg, nil
}

func parseMapping(env *cel.Env, name string, block sdk.Options, costLimit uint64) (*Mapping, error) {
	if err := block.RejectUnknown("match", "policy", "userEntityRef", "ownershipEntityRefs", "examples"); err != nil {
		return nil, err
	}
	m := &Mapping{Name: name}
	optional := func(key string, want *cel.Type) (*expr, error) {
		src, err := block.StringOr(key, "")
		if err != nil || src == "" {
			return nil, err
		}
		return compile(env, key, src, want, costLimit)
	}
	src, err := block.String("userEntityRef")
	if err != nil {
		return nil, err
	}
	if m.user, err = compile(env, "userEntityRef", src, cel.StringType, costLimit); err != nil {
		return nil, err
	}
	if m.owns, err = optional("ownershipEntityRefs", cel.ListType(cel.StringType)); err != nil {
		return nil, err
	}
	if m.match, err = optional("match", cel.BoolType); err != nil {
		return nil, err
	}
	if m.policy, err = optional("policy", cel.BoolType); err != nil {
		return nil, err
	}
	examples, err := block.List("examples")
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for i, ex := range examples {
		key := fmt.Sprintf("examples[%d]", i)
		e, err := parseExample(ex, key)
		if err != nil {
			return nil, sdk.PrefixKey(key, err)
		}
		if seen[e.name] {
			return nil, sdk.ConfigErrorf(key+".name", "%q names another example too", e.name)
		}
		seen[e.name] = true
		m.examples = append(m.examples, e)
	}
	return m, nil
}

func parseExample(ex sdk.Options, key string) (example, error) {
	e := example{key: key}
	if err := ex.RejectUnknown("name", "claims", "expectDenied", "expectNotFound",
		"profile.email", "profile.emailVerified", "profile.displayName", "profile.picture",
		"profile.preferredUsername", "profile.subject", "profile.issuer", "profile.groups",
		"expect.userEntityRef", "expect.ownershipEntityRefs"); err != nil {
		return e, err
	}
	var err error
	if e.name, err = ex.String("name"); err != nil {
		return e, err
	}
	claims, err := ex.Sub("claims")
	if err != nil {
		return e, err
	}
	e.req = exampleRequest(sdk.Claims(claims))
	if ex.Has("profile") {
		p, err := ex.Sub("profile")
		if err != nil {
			return e, err
		}
		if e.req, err = applyProfile(e.req, p); err != nil {
			return e, sdk.PrefixKey("profile", err)
		}
	}
	denied, err := ex.Bool("expectDenied", false)
	if err != nil {
		return e, err
	}
	notFound, err := ex.Bool("expectNotFound", false)
	if err != nil {
		return e, err
	}
	n := 0
	for _, set := range []bool{ex.Has("expect"), denied, notFound} {
		if set {
			n++
		}
	}
	if n != 1 {
		return e, sdk.ConfigErrorf("", "example %q: give exactly one of expect, expectDenied: true and expectNotFound: true", e.name)
	}
	switch {
	case denied:
		e.expect = expectDenied
	case notFound:
		e.expect = expectNotFound
	default:
		e.expect = expectIdentity
		user, err := ex.String("expect.userEntityRef")
		if err != nil {
			return e, err
		}
		ref, err := parseUserRef(user)
		if err != nil {
			return e, sdk.ConfigErrorf("expect.userEntityRef", "%v", err)
		}
		e.user = ref
		if ex.Has("expect.ownershipEntityRefs") {
			refs, err := ex.Strings("expect.ownershipEntityRefs")
			if err != nil {
				return e, err
			}
			e.owns = []string{e.user}
			for i, r := range refs {
				parsed, err := sdk.ParseEntityRef(r)
				if err != nil {
					return e, sdk.ConfigErrorf(fmt.Sprintf("expect.ownershipEntityRefs[%d]", i), "%v", err)
				}
				if !slices.Contains(e.owns, parsed.String()) {
					e.owns = append(e.owns, parsed.String())
				}
			}
			slices.Sort(e.owns)
		}
	}
	return e, nil
}

// exampleRequest is the request an example's claims stand for: the profile
// derived from the claims as the daemon derives it, the e-mail address
// taken as verified unless email_verified is false.
func exampleRequest(claims sdk.Claims) sdk.ResolveRequest {
	if claims == nil {
		claims = sdk.Claims{}
	}
	verified := true
	if claims.Has("email_verified") && !claims.Bool("email_verified") {
		verified = false
	}
	req := sdk.ResolveRequest{
		Resolver:          ResolverName,
		Claims:            claims,
		Subject:           claims.String("sub"),
		Issuer:            claims.String("iss"),
		PreferredUsername: claims.String("preferred_username"),
		Groups:            claims.Strings("groups"),
		Profile: sdk.Profile{
			DisplayName:   claims.String("name"),
			Picture:       claims.String("picture"),
			EmailVerified: verified && claims.String("email") != "",
		},
	}
	if req.Profile.EmailVerified {
		req.Profile.Email = claims.String("email")
	}
	return req
}

// applyProfile overrides the derived profile with an example's profile
// block.
func applyProfile(req sdk.ResolveRequest, p sdk.Options) (sdk.ResolveRequest, error) {
	var err error
	str := func(key string, dst *string) {
		if err == nil && p.Has(key) {
			*dst, err = p.StringOr(key, "")
		}
	}
	str("email", &req.Profile.Email)
	str("displayName", &req.Profile.DisplayName)
	str("picture", &req.Profile.Picture)
	str("preferredUsername", &req.PreferredUsername)
	str("subject", &req.Subject)
	str("issuer", &req.Issuer)
	if err != nil {
		return req, err
	}
	if p.Has("emailVerified") {
		if req.Profile.EmailVerified, err = p.Bool("emailVerified", false); err != nil {
			return req, err
		}
	}
	if p.Has("groups") {
		if req.Groups, err = p.Strings("groups"); err != nil {
			return req, err
		}
	}
	return req, nil
}

// parseUserRef checks a user entity ref and returns its canonical form.
func parseUserRef(s string) (string, error) {
	ref, err := sdk.ParseEntityRef(s)
	if err != nil {
		return "", err
	}
	if !strings.EqualFold(ref.Kind, "user") {
		return "", fmt.Errorf("entity ref %q has kind %q, want user", s, ref.Kind)
	}
	return ref.String(), nil
}

// Apply evaluates the mapping for req within timeout. It returns an error
// wrapping sdk.ErrNotFound when match is false, an *sdk.InvalidInputError
// on Claims when the policy refuses the user, an expression fails on these
// claims or gives a ref that is not a valid entity ref, and a context error
// when the evaluation runs out of time.
func (m *Mapping) Apply(ctx context.Context, req sdk.ResolveRequest, timeout time.Duration, log hclog.Logger) (sdk.Identity, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	id, err := m.apply(ctx, variables(req), log)
	switch {
	case err == nil:
		return id, nil
	case errors.Is(err, sdk.ErrNotFound):
		return sdk.Identity{}, fmt.Errorf("mapping %s: %w", m.Name, err)
	case isEvalError(err) || errors.Is(err, errDenied) || errors.Is(err, errBadRef):
		return sdk.Identity{}, &sdk.InvalidInputError{Field: "Claims", Err: fmt.Errorf("mapping %s: %w", m.Name, err)}
	default:
		return sdk.Identity{}, fmt.Errorf("mapping %s: %w", m.Name, err)
	}
}

// errBadRef is wrapped by the errors of refs that are not valid entity refs.
var errBadRef = errors.New("not a valid Backstage entity ref")

func (m *Mapping) apply(ctx context.Context, vars map[string]any, log hclog.Logger) (sdk.Identity, error) {
	if m.match != nil {
		ok, err := m.match.evalBool(ctx, vars)
		if err != nil {
			return sdk.Identity{}, err
		}
		if !ok {
			return sdk.Identity{}, fmt.Errorf("match is false for these claims: %w", sdk.ErrNotFound)
		}
	}
	if m.policy != nil {
		ok, err := m.policy.evalBool(ctx, vars)
		if err != nil {
			return sdk.Identity{}, err
		}
		if !ok {
			return sdk.Identity{}, errDenied
		}
	}
	s, err := m.user.evalString(ctx, vars)
	if err != nil {
		return sdk.Identity{}, err
	}
	user, err := parseUserRef(s)
	if err != nil {
		return sdk.Identity{}, fmt.Errorf("userEntityRef: %w: %w", errBadRef, err)
	}
	owns := []string{user}
	if m.owns != nil {
		refs, err := m.owns.evalStrings(ctx, vars)
		if err != nil {
			return sdk.Identity{}, err
		}
		for i, r := range refs {
			ref, err := sdk.ParseEntityRef(r)
			if err != nil {
				return sdk.Identity{}, fmt.Errorf("ownershipEntityRefs[%d]: %w: %w", i, errBadRef, err)
			}
			if c := ref.String(); !slices.Contains(owns, c) {
				owns = append(owns, c)
			}
		}
	}
	if len(owns) > sdk.MaxOwnershipEntityRefs {
		log.Warn("mapping gave more ownership refs than an identity can carry: leaving the last ones out",
			"mapping", m.Name, "user", user, "refs", len(owns), "kept", sdk.MaxOwnershipEntityRefs)
		owns = owns[:sdk.MaxOwnershipEntityRefs]
	}
	return sdk.Identity{UserEntityRef: user, OwnershipEntityRefs: owns}, nil
}

// CheckExamples evaluates the mapping's examples and fails, with a
// *sdk.ConfigError naming the first failing one, unless each has its
// expected outcome.
func (m *Mapping) CheckExamples(ctx context.Context, timeout time.Duration, log hclog.Logger) error {
	for _, e := range m.examples {
		id, err := m.Apply(ctx, e.req, timeout, log)
		if msg := e.check(id, err); msg != "" {
			return sdk.ConfigErrorf("mappings."+m.Name+"."+e.key, "example %q fails: %s", e.name, msg)
		}
	}
	return nil
}

// check compares an outcome with the example's; it returns what differs.
func (e example) check(id sdk.Identity, err error) string {
	switch e.expect {
	case expectDenied:
		if errors.Is(err, errDenied) {
			return ""
		}
		return fmt.Sprintf("got %s, want a refusal by the policy", outcomeOf(id, err))
	case expectNotFound:
		if errors.Is(err, sdk.ErrNotFound) {
			return ""
		}
		return fmt.Sprintf("got %s, want not found (match false)", outcomeOf(id, err))
	}
	if err != nil {
		return fmt.Sprintf("got %s, want %s", outcomeOf(id, err), e.user)
	}
	if id.UserEntityRef != e.user {
		return fmt.Sprintf("userEntityRef is %q, want %q", id.UserEntityRef, e.user)
	}
	if e.owns != nil {
		got := slices.Sorted(slices.Values(id.OwnershipEntityRefs))
		if !slices.Equal(got, e.owns) {
			return fmt.Sprintf("ownershipEntityRefs are %q, want %q (in any order; the user's own ref is always included)", got, e.owns)
		}
	}
	return ""
}

func outcomeOf(id sdk.Identity, err error) string {
	switch {
	case err == nil:
		return fmt.Sprintf("the identity %s owning %q", id.UserEntityRef, id.OwnershipEntityRefs)
	case errors.Is(err, errDenied):
		return "a refusal by the policy"
	case errors.Is(err, sdk.ErrNotFound):
		return "not found (match false)"
	default:
		return fmt.Sprintf("the error %q", err.Error())
	}
}
