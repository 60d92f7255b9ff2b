package catalog

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/spectroauth/spectroauth/sdk"
)

// PluginName is the name the plugin describes itself with.
const PluginName = "backstage-catalog"

// maxEmailLength bounds the e-mail addresses looked up (RFC 5321 allows 254
// in a path; 320 leaves room for what providers send).
const maxEmailLength = 320

// Plugin returns the plugin, ready for sdk.Serve.
func Plugin() sdk.Plugin {
	c := New()
	return sdk.Plugin{Name: PluginName, Resolver: c, Configurer: c, OptionsValidator: c}
}

// What Plugin registers, checked by the compiler.
var (
	_ sdk.Resolver         = (*Catalog)(nil)
	_ sdk.Configurer       = (*Catalog)(nil)
	_ sdk.OptionsValidator = (*Catalog)(nil)
)

// Catalog resolves users against Backstage's catalog. It implements
// sdk.Resolver, sdk.Configurer and sdk.OptionsValidator. Create it with New;
// it is safe for concurrent use.
type Catalog struct {
	// Logger receives the plugin's logs; nil means hclog.Default(), which
	// sdk.Serve points at stderr.
	Logger hclog.Logger
	// Now is the clock of the cache; nil means time.Now.
	Now func() time.Time

	state atomic.Pointer[state]
}

// state is what Configure sets up.
type state struct {
	cfg     Config
	client  *client
	cache   *cache
	flights flights
	log     hclog.Logger
}

// New returns an unconfigured Catalog.
func New() *Catalog { return &Catalog{} }

var (
	_ sdk.Resolver         = (*Catalog)(nil)
	_ sdk.Configurer       = (*Catalog)(nil)
	_ sdk.OptionsValidator = (*Catalog)(nil)
)

// Resolvers lists the resolvers offered, named as Backstage names them.
func (c *Catalog) Resolvers() []string { return slices.Clone(resolverNames) }

// Configure checks and applies the plugin's `config:` block (see README.md).
// A new configuration starts with an empty cache.
func (c *Catalog) Configure(_ context.Context, cfg sdk.Config) error {
	parsed, err := ParseConfig(cfg.Values)
	if err != nil {
		return err
	}
	log := c.Logger
	if log == nil {
		log = hclog.Default()
	}
	now := c.Now
	if now == nil {
		now = time.Now
	}
	if parsed.BaseURL.Scheme == "http" && parsed.Token != "" && !isLoopback(parsed.BaseURL) {
		log.Warn("the catalog's service token goes over plain http: use an https baseUrl", "baseUrl", parsed.BaseURL.String())
	}
	c.state.Store(&state{
		cfg:    parsed,
		client: newClient(parsed),
		cache:  newCache(parsed.CacheTTL, parsed.NotFoundCacheTTL, parsed.CacheSize, now),
		log:    log,
	})
	log.Info("configured", "instance", cfg.InstanceName, "baseUrl", parsed.BaseURL.String(), "token", parsed.Token != "",
		"timeout", parsed.Timeout, "cacheTTL", parsed.CacheTTL, "notFoundCacheTTL", parsed.NotFoundCacheTTL, "cacheSize", parsed.CacheSize)
	return nil
}

// ValidateOptions checks a resolver's `options:`.
func (c *Catalog) ValidateOptions(_ context.Context, req sdk.ValidateOptionsRequest) error {
	_, err := parseOptions(req.Name, req.Options)
	return err
}

// Resolve finds the Backstage identity of the user req describes, with the
// resolver req.Resolver. It returns an error wrapping sdk.ErrNotFound when
// no User entity matches (and the dangerous option is off), an
// *sdk.InvalidInputError when the request lacks what the resolver needs or
// is refused (unverified e-mail, domain not among allowedDomains), and
// another error when the catalog cannot be asked or its answer is ambiguous.
func (c *Catalog) Resolve(ctx context.Context, req sdk.ResolveRequest) (sdk.Identity, error) {
	st := c.state.Load()
	if st == nil {
		return sdk.Identity{}, errors.New("plugin is not configured: no Configure call has succeeded")
	}
	opts, err := parseOptions(req.Resolver, req.Options)
	if err != nil {
		return sdk.Identity{}, err
	}
	if err := ctx.Err(); err != nil {
		return sdk.Identity{}, fmt.Errorf("%s: %w", req.Resolver, err)
	}
	r := &resolution{st: st, name: req.Resolver, opts: opts}
	switch req.Resolver {
	case ResolverProfileEmail:
		return r.profileEmail(ctx, req)
	case ResolverLocalPart:
		return r.localPart(ctx, req)
	case ResolverAnnotation:
		return r.annotation(ctx, req)
	case ResolverPreferredUsername:
		return r.preferredUsername(ctx, req)
	}
	return sdk.Identity{}, sdk.InvalidInputf("Resolver", "%q is not offered by this plugin (it offers %s)", req.Resolver, strings.Join(resolverNames, ", "))
}

// resolution is one Resolve call.
type resolution struct {
	st   *state
	name string
	opts resolverOptions
}

func (r *resolution) profileEmail(ctx context.Context, req sdk.ResolveRequest) (sdk.Identity, error) {
	addr, err := r.verifiedEmail(req)
	if err != nil {
		return sdk.Identity{}, err
	}
	match := func(e *entity) bool { return sameText(e.Spec.Profile.Email, addr.full) }
	res, err := r.lookup(ctx, "email", addr.full, func(ctx context.Context) ([]*entity, error) {
		return r.st.client.queryUsers(ctx, "spec.profile.email", addr.full, match)
	})
	if err != nil || res.found {
		return res.id, err
	}
	fallback := addr
	if untagged, ok := addr.withoutTag(); ok {
		fallback = untagged
		match := func(e *entity) bool { return sameText(e.Spec.Profile.Email, untagged.full) }
		res, err = r.lookup(ctx, "email", untagged.full, func(ctx context.Context) ([]*entity, error) {
			return r.st.client.queryUsers(ctx, "spec.profile.email", untagged.full, match)
		})
		if err != nil || res.found {
			return res.id, err
		}
	}
	// Backstage's fallback name here is the whole address, which is not a
	// valid entity name; the local part (without a +tag) is.
	return r.notFound(fallback.local, "Profile.Email", "no User entity has spec.profile.email %q", addr.full)
}

func (r *resolution) localPart(ctx context.Context, req sdk.ResolveRequest) (sdk.Identity, error) {
	addr, err := r.verifiedEmail(req)
	if err != nil {
		return sdk.Identity{}, err
	}
	return r.byName(ctx, addr.local, "Profile.Email")
}

func (r *resolution) annotation(ctx context.Context, req sdk.ResolveRequest) (sdk.Identity, error) {
	addr, err := r.verifiedEmail(req)
	if err != nil {
		return sdk.Identity{}, err
	}
	key := r.opts.annotation
	match := func(e *entity) bool { return sameText(e.Metadata.Annotations[key], addr.full) }
	res, err := r.lookup(ctx, "annotation", addr.full, func(ctx context.Context) ([]*entity, error) {
		return r.st.client.queryUsers(ctx, "metadata.annotations."+key, addr.full, match)
	})
	if err != nil || res.found {
		return res.id, err
	}
	return r.notFound(addr.local, "Profile.Email", "no User entity has the annotation %s: %q", key, addr.full)
}

func (r *resolution) preferredUsername(ctx context.Context, req sdk.ResolveRequest) (sdk.Identity, error) {
	username := req.PreferredUsername
	if username == "" {
		username = req.Claims.String("preferred_username")
	}
	if username == "" {
		return sdk.Identity{}, sdk.InvalidInputf("PreferredUsername", "is empty: resolver %s needs the preferred_username claim", r.name)
	}
	if r.opts.allowedDomains != nil {
		// Not an e-mail resolver, but allowedDomains still restricts who
		// signs in: by the domain of the verified e-mail address.
		if _, err := r.verifiedEmail(req); err != nil {
			return sdk.Identity{}, err
		}
	}
	return r.byName(ctx, username, "PreferredUsername")
}

// byName signs in the User default/name.
func (r *resolution) byName(ctx context.Context, name, field string) (sdk.Identity, error) {
	if (sdk.EntityRef{Kind: "user", Namespace: sdk.DefaultNamespace, Name: name}).Validate() != nil {
		// No entity can have this name: nothing to ask the catalog.
		return r.notFound(name, field, "%q cannot be the name of a User entity", name)
	}
	res, err := r.lookup(ctx, "name", name, func(ctx context.Context) ([]*entity, error) {
		e, err := r.st.client.userByName(ctx, name)
		if errors.Is(err, errNoEntity) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		return []*entity{e}, nil
	})
	if err != nil || res.found {
		return res.id, err
	}
	return r.notFound(name, field, "no User entity is named %s", (sdk.EntityRef{Kind: "user", Namespace: sdk.DefaultNamespace, Name: name}).String())
}

// notFound answers a lookup that found nobody: sdk.ErrNotFound, or with
// dangerouslyAllowSignInWithoutUserInCatalog the identity
// user:default/<name> owning only itself.
func (r *resolution) notFound(name, field, format string, args ...any) (sdk.Identity, error) {
	why := fmt.Sprintf(format, args...)
	if !r.opts.dangerous {
		return sdk.Identity{}, fmt.Errorf("%s: %s: %w", r.name, why, sdk.ErrNotFound)
	}
	ref := sdk.EntityRef{Kind: "user", Namespace: sdk.DefaultNamespace, Name: name}
	if err := ref.Validate(); err != nil {
		return sdk.Identity{}, sdk.InvalidInputf(field, "resolver %s: %s, and %s cannot sign in without a User entity as %q is not a valid entity name", r.name, why, optDangerous, name)
	}
	r.st.log.Warn("signing in a user who is not in the catalog", "resolver", r.name, "option", optDangerous, "userEntityRef", ref.String())
	return sdk.Identity{UserEntityRef: ref.String(), OwnershipEntityRefs: []string{ref.String()}}, nil
}

// lookup returns the cached result for (resolver, options, kind, input) or
// runs find, at most once at a time per key, and caches what it gives.
func (r *resolution) lookup(ctx context.Context, kind, input string, find func(context.Context) ([]*entity, error)) (result, error) {
	st := r.st
	key := r.name + "\x00" + r.opts.key + "\x00" + kind + "\x00" + strings.ToLower(input)
	if res, ok := st.cache.get(key); ok {
		st.log.Trace("cache hit", "resolver", r.name, "lookup", kind)
		return res, nil
	}
	timeout, why := lookupTimeout(ctx, st.cfg.Timeout)
	res, err := st.flights.do(ctx, key, timeout, func(fctx context.Context) (result, error) {
		start := time.Now()
		entities, err := find(fctx)
		if err != nil {
			if errors.Is(fctx.Err(), context.DeadlineExceeded) {
				err = fmt.Errorf("the catalog did not answer within %s (%s): %w", timeout.Round(time.Millisecond), why, context.DeadlineExceeded)
			}
			st.log.Debug("catalog lookup failed", "resolver", r.name, "lookup", kind, "duration", time.Since(start), "error", err)
			return result{}, err
		}
		st.log.Debug("catalog lookup", "resolver", r.name, "lookup", kind, "matches", len(entities), "duration", time.Since(start))
		var res result
		switch len(entities) {
		case 0:
		case 1:
			id, err := identityOf(entities[0], st.log)
			if err != nil {
				return result{}, err
			}
			res = result{id: id, found: true}
		default:
			return result{}, fmt.Errorf("more than one User entity matches (%s and %s): refusing to guess; make the catalog unambiguous", describe(entities[0]), describe(entities[1]))
		}
		st.cache.put(key, res)
		return res, nil
	})
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return result{}, fmt.Errorf("%s: gave up waiting for the catalog: %w", r.name, err)
		}
		return result{}, fmt.Errorf("%s: %w", r.name, err)
	}
	return res, nil
}

// lookupTimeout is how long a lookup for ctx may take: the configured
// timeout, unless the caller's deadline (the daemon's callTimeout) comes
// sooner. Then the lookup stops a little before it, so that the daemon gets
// this plugin's answer, naming the catalog, rather than a call that ran into
// its deadline (which the daemon counts against the plugin's health). why
// says which bound applies.
func lookupTimeout(ctx context.Context, configured time.Duration) (time.Duration, string) {
	dl, ok := ctx.Deadline()
	if !ok {
		return configured, "config key timeout"
	}
	left := time.Until(dl)
	budget := left - min(100*time.Millisecond, left/10)
	if budget >= configured {
		return configured, "config key timeout"
	}
	return max(budget, 0), "what the caller's deadline left; set the plugin's callTimeout in the daemon above this plugin's timeout"
}

// email is an e-mail address split at its '@'.
type email struct {
	full, local, domain string
}

// withoutTag returns the address without the "+tag" of its local part, as
// Backstage strips it: "jdoe+work@example.com" becomes "jdoe@example.com".
func (a email) withoutTag() (email, bool) {
	i := strings.IndexByte(a.local, '+')
	if i <= 0 || i == len(a.local)-1 {
		return a, false
	}
	local := a.local[:i]
	return email{full: local + "@" + a.domain, local: local, domain: a.domain}, true
}

// verifiedEmail returns the request's e-mail address, which must be present,
// verified upstream, usable in a catalog filter, and from an allowed domain.
func (r *resolution) verifiedEmail(req sdk.ResolveRequest) (email, error) {
	addr := req.Profile.Email
	switch {
	case addr == "":
		return email{}, sdk.InvalidInputf("Profile.Email", "is empty: resolver %s needs the user's verified e-mail address", r.name)
	case !req.Profile.EmailVerified:
		return email{}, sdk.InvalidInputf("Profile.EmailVerified", "is false: resolver %s uses only e-mail addresses the upstream provider verified", r.name)
	case len(addr) > maxEmailLength:
		return email{}, sdk.InvalidInputf("Profile.Email", "is %d bytes, longer than %d", len(addr), maxEmailLength)
	}
	local, domain, ok := strings.Cut(addr, "@")
	if !ok || local == "" || domain == "" || strings.Contains(domain, "@") ||
		strings.ContainsFunc(addr, func(r rune) bool { return r <= ' ' || r == 0x7f || r == ',' || r == '=' }) {
		// ',' and '=' cannot be put into a catalog filter value.
		return email{}, sdk.InvalidInputf("Profile.Email", "%q is not an e-mail address resolver %s can look up", addr, r.name)
	}
	if !r.opts.domainAllowed(domain) {
		// Backstage refuses (NotAllowedError) rather than moving on to the
		// next resolver, and so do we.
		return email{}, sdk.InvalidInputf("Profile.Email", "sign-in refused: the domain %q is not among the allowedDomains of resolver %s", domain, r.name)
	}
	return email{full: addr, local: local, domain: domain}, nil
}
