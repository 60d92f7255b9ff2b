package identity

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/cryptosigner"
	"github.com/google/uuid"
	"github.com/hashicorp/go-hclog"

	"github.com/spectroauth/spectroauth/sdk"
)

// Token types ("typ" header) and the audience of Backstage user tokens.
const (
	TypeUser        = "vnd.backstage.user"
	TypeLimitedUser = "vnd.backstage.limited-user"
	Audience        = "backstage"
)

// Lifetime bounds, as Backstage enforces them for
// auth.backstageTokenExpiration.
const (
	DefaultLifetime = time.Hour
	MinLifetime     = 10 * time.Minute
	MaxLifetime     = 24 * time.Hour
)

// MaxTokenLength is the longest user token Issue produces, as in Backstage:
// a token beyond it means a resolver handed over far too many ownership refs
// or extra claims.
const MaxTokenLength = 32768

// Re-reading the key store for keys other replicas added. A key is stored
// before it signs anything, so a reload that starts after a token was
// issued knows the token's key: Verify, meeting an unknown kid, reloads
// only when no reload started since the token's "iat" (plus clockSkew,
// for replicas whose clocks differ), and a forged kid with an old "iat"
// costs nothing. Reloads are single-flight and at least minReloadGap apart,
// failed ones included, so a flood of forged kids costs at most one read of
// the store per gap, and callers waiting for a read share the one that
// starts after they asked, whatever its outcome. FreshJWKS waits at most
// freshJWKSWait for a read and otherwise serves the keys it has: a store
// that hangs must not hold up the JWKS that Backstage backends fetch.
const (
	minReloadGap  = 250 * time.Millisecond
	clockSkew     = 5 * time.Second
	freshJWKSWait = time.Second
)

// Config configures an Issuer.
type Config struct {
	// Issuer is the "iss" claim: the external base URL of the auth routes,
	// "<baseUrl>/api/auth". Required.
	Issuer string
	// Lifetime of issued tokens, and of each signing key. Zero means
	// DefaultLifetime; otherwise it must lie in [MinLifetime, MaxLifetime].
	Lifetime time.Duration
	// KeyStore persists the signing keys. Required.
	KeyStore KeyStore
	// UserInfo, when set, receives the user's claims on every Issue, for the
	// /v1/userinfo route.
	UserInfo UserInfoStore
	// SharedKeyStore says that other processes (replicas) add keys to
	// KeyStore: FreshJWKS then re-reads it, so a key another replica just
	// made is published by every replica. Verify re-reads it on an unknown
	// kid either way.
	SharedKeyStore bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger; nil means no logging.
	Logger hclog.Logger
}

// Claims are what a caller asks Issue to put into a user token.
type Claims struct {
	// Subject is the user entity ref, e.g. "user:default/alice".
	Subject string
	// Ent are the ownership entity refs. Empty means [Subject], as in
	// Backstage. They always go to the UserInfoStore.
	Ent []string
	// IncludeEnt puts "ent" into the token. Current Backstage leaves it out
	// (consumers read ownership from /v1/userinfo), which keeps tokens small.
	IncludeEnt bool
	// Extra claims are added to the payload. They must marshal to JSON and
	// must not use the reserved names of sdk.ReservedClaims (the ones Issue
	// sets, and those a consumer acts on), "sid" apart: the daemon's session
	// layer names the session through it.
	Extra map[string]any
}

// Token is an issued user token.
type Token struct {
	// Raw is the compact JWS. It is a credential: never log it.
	Raw string
	// ExpiresAt is the "exp" claim.
	ExpiresAt time.Time
	// IssuedAt is the "iat" claim.
	IssuedAt time.Time
}

// String describes the token without revealing it, so that a token printed
// by mistake (%v) leaks nothing.
func (t Token) String() string {
	return fmt.Sprintf("identity.Token{Raw: [redacted], IssuedAt: %s, ExpiresAt: %s}",
		t.IssuedAt.UTC().Format(time.RFC3339), t.ExpiresAt.UTC().Format(time.RFC3339))
}

// GoString is String, for %#v.
func (t Token) GoString() string { return t.String() }

// Issuer signs Backstage user tokens and verifies them. It is safe for
// concurrent use.
type Issuer struct {
	issuer   string
	lifetime time.Duration
	lifeSec  int64
	store    KeyStore
	userInfo UserInfoStore
	now      func() time.Time
	log      hclog.Logger

	// set is the current immutable key snapshot; the hot paths only load it.
	set atomic.Pointer[keySet]

	// mu serialises rotation, pruning and reloads (never the hot path).
	mu         sync.Mutex
	keys       []Key     // every key known, as loaded or added; guarded by mu
	lastReload time.Time // when the newest completed read of the store started
	// lastAttempt is when the newest read of the store started, whether it
	// succeeded or not.
	lastAttempt time.Time

	// reloading makes reloads for unknown kids and fresh JWKS single-flight:
	// a send takes the turn, and waiting for it gives up with the caller's
	// context.
	reloading chan struct{}
	// shared: other processes add keys to the store (Config.SharedKeyStore).
	shared bool
}

// keySet is an immutable snapshot of the keys in use.
type keySet struct {
	signer   *signingKey            // nil until the first key exists
	verify   map[string]verifierKey // kid → public key, for keys younger than 3 lifetimes
	jwks     []byte                 // pre-marshalled {"keys":[...]}
	rotateAt time.Time              // when signer gets too old; zero: rotate now
	pruneAt  time.Time              // when the oldest published key must leave; zero: never
}

type signingKey struct {
	id      string
	created time.Time
	signer  jose.OpaqueSigner
	// Pre-encoded header segments, base64url and ending in '.'.
	userHeader    []byte
	limitedHeader []byte
}

type verifierKey struct {
	pub     *ecdsa.PublicKey
	created time.Time
}

// New loads the signing keys from cfg.KeyStore and returns an Issuer. Keys
// too old to have signed a valid token are dropped from the store.
func New(cfg Config) (*Issuer, error) {
	if cfg.Issuer == "" {
		return nil, errors.New("identity: Config.Issuer is required")
	}
	if cfg.KeyStore == nil {
		return nil, errors.New("identity: Config.KeyStore is required")
	}
	life := cfg.Lifetime
	if life == 0 {
		life = DefaultLifetime
	}
	if life < MinLifetime || life > MaxLifetime {
		return nil, fmt.Errorf("identity: Config.Lifetime %s is out of range: it must be between %s and %s", life, MinLifetime, MaxLifetime)
	}
	if life%time.Second != 0 {
		return nil, fmt.Errorf("identity: Config.Lifetime %s must be a whole number of seconds", life)
	}
	i := &Issuer{
		issuer:   cfg.Issuer,
		lifetime: life,
		lifeSec:  int64(life / time.Second),
		store:    cfg.KeyStore,
		userInfo: cfg.UserInfo,
		now:      cfg.Now,
		log:      cfg.Logger,
		shared:   cfg.SharedKeyStore,
	}
	i.reloading = make(chan struct{}, 1)
	if i.now == nil {
		i.now = time.Now
	}
	if i.log == nil {
		i.log = hclog.NewNullLogger()
	}
	ctx := context.Background()
	started := i.now()
	keys, err := i.store.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("identity: loading signing keys: %w", err)
	}
	now := i.now()
	i.mu.Lock()
	defer i.mu.Unlock()
	i.keys = keys
	i.lastReload = started
	if err := i.rebuildLocked(ctx, now, ""); err != nil {
		return nil, err
	}
	return i, nil
}

// Lifetime is the lifetime of issued tokens.
func (i *Issuer) Lifetime() time.Duration { return i.lifetime }

// IssuerURL is the "iss" claim of issued tokens.
func (i *Issuer) IssuerURL() string { return i.issuer }

// JWKS returns the public keys as pre-marshalled JSON, {"keys":[...]}, for
// GET /.well-known/jwks.json. It lists every key younger than three token
// lifetimes. The slice is shared: do not modify it.
func (i *Issuer) JWKS() []byte {
	s := i.set.Load()
	if !s.pruneAt.IsZero() && !i.now().Before(s.pruneAt) {
		s = i.refresh(context.Background())
	}
	return s.jwks
}

// Issue signs a user token for c.
func (i *Issuer) Issue(ctx context.Context, c Claims) (Token, error) {
	if err := validateEntityRef(c.Subject); err != nil {
		return Token{}, fmt.Errorf("identity: issuing token: subject: %w", err)
	}
	ent := c.Ent
	if len(ent) == 0 {
		ent = []string{c.Subject}
	}
	for _, e := range ent {
		if !utf8.ValidString(e) {
			return Token{}, errors.New("identity: issuing token: an ownership ref is not valid UTF-8")
		}
	}
	extra, err := encodeExtra(c.Extra)
	if err != nil {
		return Token{}, fmt.Errorf("identity: issuing token: %w", err)
	}

	now := i.now()
	s := i.set.Load()
	if s.signer == nil || !now.Before(s.rotateAt) {
		if s, err = i.rotate(ctx, now); err != nil {
			return Token{}, err
		}
	}
	key := s.signer
	iat := now.Unix()
	exp := iat + i.lifeSec

	// The limited token: only its signature travels, as "uip".
	buf := make([]byte, 0, 1024)
	buf = append(buf, key.limitedHeader...)
	var payload [256]byte
	buf = appendB64(buf, appendLimitedPayloadJSON(payload[:0], c.Subject, iat, exp))
	sig, err := key.signer.SignPayload(buf, jose.ES256)
	if err != nil {
		return Token{}, fmt.Errorf("identity: signing limited user token with key %s: %w", key.id, err)
	}
	var uip [86]byte // base64url of a 64-byte ES256 signature
	uipB64 := appendB64(uip[:0], sig)

	// The user token.
	p := make([]byte, 0, 512+len(extra))
	p = append(p, `{"iss":`...)
	p = appendJSString(p, i.issuer)
	p = append(p, `,"sub":`...)
	p = appendJSString(p, c.Subject)
	if c.IncludeEnt {
		p = append(p, `,"ent":`...)
		p = appendJSStringArray(p, ent)
	}
	p = append(p, `,"aud":"`+Audience+`","iat":`...)
	p = appendInt(p, iat)
	p = append(p, `,"exp":`...)
	p = appendInt(p, exp)
	p = append(p, `,"uip":"`...)
	p = append(p, uipB64...)
	p = append(p, '"')
	p = append(p, extra...)
	p = append(p, '}')

	buf = append(buf[:0], key.userHeader...)
	buf = appendB64(buf, p)
	sig, err = key.signer.SignPayload(buf, jose.ES256)
	if err != nil {
		return Token{}, fmt.Errorf("identity: signing user token with key %s: %w", key.id, err)
	}
	buf = append(buf, '.')
	buf = appendB64(buf, sig)
	if len(buf) > MaxTokenLength {
		return Token{}, fmt.Errorf("identity: issuing token for %s: the token would be %d bytes, over the %d limit: too many ownership refs or extra claims", c.Subject, len(buf), MaxTokenLength)
	}

	if i.userInfo != nil {
		info := UserInfo{Claims: UserInfoClaims{Sub: c.Subject, Ent: ent}}
		if err := i.userInfo.Put(ctx, c.Subject, info); err != nil {
			return Token{}, fmt.Errorf("identity: storing user info for %s: %w", c.Subject, err)
		}
	}
	if i.log.IsDebug() {
		i.log.Debug("issued user token", "sub", c.Subject, "ent", ent, "kid", key.id, "exp", exp)
	}
	return Token{Raw: string(buf), IssuedAt: time.Unix(iat, 0), ExpiresAt: time.Unix(exp, 0)}, nil
}

// Reload re-reads the key store, so keys that other replicas added become
// known (for Verify and the JWKS). Verify calls it on its own, at most every
// few seconds, when it meets an unknown kid.
func (i *Issuer) Reload(ctx context.Context) error {
	started := i.now()
	i.mu.Lock()
	if started.After(i.lastAttempt) {
		i.lastAttempt = started
	}
	i.mu.Unlock()
	keys, err := i.store.ListKeys(ctx)
	if err != nil {
		return fmt.Errorf("identity: reloading signing keys: %w", err)
	}
	now := i.now()
	i.mu.Lock()
	defer i.mu.Unlock()
	if started.After(i.lastReload) {
		i.lastReload = started
	}
	// Keep the key we sign with even if the store lost it.
	if s := i.set.Load(); s.signer != nil && !slices.ContainsFunc(keys, func(k Key) bool { return k.ID == s.signer.id }) {
		if j := slices.IndexFunc(i.keys, func(k Key) bool { return k.ID == s.signer.id }); j >= 0 {
			keys = append(keys, i.keys[j])
		}
	}
	i.keys = keys
	return i.rebuildLocked(ctx, now, "")
}

// reloadSince makes sure a read of the key store that started at or after
// t has completed: it returns at once if one has, and otherwise reloads,
// waiting out minReloadGap since the last read (failed or not). Callers
// that queued behind a read started after they asked share its result,
// failure included: a store that hangs or refuses is read once for all of
// them, not once for each in turn. It gives up when ctx ends.
func (i *Issuer) reloadSince(ctx context.Context, t time.Time) {
	asked := i.now()
	if t.After(asked) {
		t = asked // a read starting now sees every key stored so far
	}
	select {
	case i.reloading <- struct{}{}:
	case <-ctx.Done():
		return
	}
	defer func() { <-i.reloading }()
	i.mu.Lock()
	last, tried := i.lastReload, i.lastAttempt
	i.mu.Unlock()
	if last.After(tried) {
		tried = last
	}
	if !last.Before(t) || tried.After(asked) {
		return
	}
	if wait := minReloadGap - i.now().Sub(tried); wait > 0 {
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
	}
	if err := i.Reload(ctx); err != nil {
		i.log.Warn("could not reload signing keys", "error", err)
	}
}

// FreshJWKS is JWKS, re-reading a shared key store first when it was last
// read more than minReloadGap ago: a Backstage backend that meets a new kid
// refetches the JWKS, and whichever replica answers must know the key.
func (i *Issuer) FreshJWKS(ctx context.Context) []byte {
	if i.shared {
		ctx, cancel := context.WithTimeout(ctx, freshJWKSWait)
		i.reloadSince(ctx, i.now().Add(-minReloadGap))
		cancel()
	}
	return i.JWKS()
}

// rotate makes and stores a new signing key unless another caller just did.
func (i *Issuer) rotate(ctx context.Context, now time.Time) (*keySet, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if s := i.set.Load(); s.signer != nil && now.Before(s.rotateAt) {
		return s, nil
	}
	if i.shared {
		// Replicas rotate at the same moment (their signing key is the
		// same): sign with a key another one just made rather than each
		// adding its own, which would multiply the keys in the JWKS.
		if s, ok := i.adoptFreshKeyLocked(ctx, now); ok {
			return s, nil
		}
	}
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("identity: rotating signing key: generating key: %w", err)
	}
	id, err := uuid.NewRandom()
	if err != nil {
		return nil, fmt.Errorf("identity: rotating signing key: making key id: %w", err)
	}
	k := Key{ID: id.String(), CreatedAt: now.UTC(), Private: priv, Public: &priv.PublicKey}
	// The key may sign only once it is stored: a restart (or another
	// replica) must be able to verify what it signed.
	if err := i.store.AddKey(ctx, k); err != nil {
		return nil, fmt.Errorf("identity: rotating signing key: %w", err)
	}
	i.keys = append(i.keys, k)
	i.log.Info("created new signing key", "kid", k.ID)
	if err := i.rebuildLocked(ctx, now, k.ID); err != nil {
		return nil, err
	}
	return i.set.Load(), nil
}

// adoptFreshKeyLocked re-reads the store and signs with the newest key in
// it when that key is younger than half a lifetime. Call with i.mu held.
func (i *Issuer) adoptFreshKeyLocked(ctx context.Context, now time.Time) (*keySet, bool) {
	started := i.now()
	keys, err := i.store.ListKeys(ctx)
	if err != nil {
		i.log.Warn("could not read the shared signing keys before rotating; making a new key", "error", err)
		return nil, false
	}
	var fresh *Key
	for j := range keys {
		k := &keys[j]
		if k.Private != nil && now.Sub(k.CreatedAt) < i.lifetime/2 && now.Sub(k.CreatedAt) >= 0 && (fresh == nil || k.CreatedAt.After(fresh.CreatedAt)) {
			fresh = k
		}
	}
	if fresh == nil {
		return nil, false
	}
	id := fresh.ID
	for _, k := range i.keys {
		if !slices.ContainsFunc(keys, func(x Key) bool { return x.ID == k.ID }) {
			keys = append(keys, k) // keep what the store lost, as Reload does
		}
	}
	i.keys = keys
	if started.After(i.lastReload) {
		i.lastReload = started
	}
	if err := i.rebuildLocked(ctx, now, id); err != nil {
		i.log.Warn("could not use another replica's signing key; making a new key", "kid", id, "error", err)
		return nil, false
	}
	i.log.Info("signing with the key another replica made", "kid", id)
	return i.set.Load(), true
}

// refresh rebuilds the snapshot after keys aged out of the JWKS.
func (i *Issuer) refresh(ctx context.Context) *keySet {
	i.mu.Lock()
	defer i.mu.Unlock()
	now := i.now()
	if s := i.set.Load(); s.pruneAt.IsZero() || now.Before(s.pruneAt) {
		return s
	}
	if err := i.rebuildLocked(ctx, now, ""); err != nil {
		i.log.Error("could not rebuild the key set", "error", err)
	}
	return i.set.Load()
}

// rebuildLocked drops keys older than three lifetimes (from memory and, best
// effort, from the store), picks the signing key and publishes a new
// snapshot. preferID, when set, is the key to sign with. Call with i.mu held.
func (i *Issuer) rebuildLocked(ctx context.Context, now time.Time, preferID string) error {
	keep := 3 * i.lifetime
	cutoff := now.Add(-keep)
	n := len(i.keys)
	i.keys = slices.DeleteFunc(i.keys, func(k Key) bool { return !k.CreatedAt.After(cutoff) })
	if len(i.keys) < n {
		if err := i.store.DeleteKeysBefore(ctx, cutoff.Add(time.Nanosecond)); err != nil {
			// Not fatal: the keys are out of the JWKS already and a later
			// rotation tries again.
			i.log.Warn("could not delete expired signing keys", "error", err)
		}
	}
	// Newest first, for a stable JWKS and signer choice.
	sort.SliceStable(i.keys, func(a, b int) bool { return i.keys[a].CreatedAt.After(i.keys[b].CreatedAt) })

	s := &keySet{verify: make(map[string]verifierKey, len(i.keys))}
	jwks := struct {
		Keys []jose.JSONWebKey `json:"keys"`
	}{Keys: make([]jose.JSONWebKey, 0, len(i.keys))}
	var signer *Key
	for j := range i.keys {
		k := &i.keys[j]
		if _, dup := s.verify[k.ID]; dup {
			continue
		}
		s.verify[k.ID] = verifierKey{pub: k.Public, created: k.CreatedAt}
		jwks.Keys = append(jwks.Keys, jose.JSONWebKey{Key: k.Public, KeyID: k.ID, Algorithm: string(jose.ES256), Use: "sig"})
		if at := k.CreatedAt.Add(keep); s.pruneAt.IsZero() || at.Before(s.pruneAt) {
			s.pruneAt = at
		}
		if k.Private == nil || now.Sub(k.CreatedAt) >= i.lifetime {
			continue
		}
		if signer == nil || k.ID == preferID {
			signer = k
		}
	}
	data, err := json.Marshal(jwks)
	if err != nil {
		return fmt.Errorf("identity: encoding the JWKS: %w", err)
	}
	s.jwks = data
	if signer != nil {
		s.signer = newSigningKey(*signer)
		s.rotateAt = signer.CreatedAt.Add(i.lifetime)
	}
	i.set.Store(s)
	return nil
}

func newSigningKey(k Key) *signingKey {
	enc := func(typ string) []byte {
		h := base64.RawURLEncoding.AppendEncode(nil, headerJSON(typ, k.ID))
		return append(h, '.')
	}
	return &signingKey{
		id:            k.ID,
		created:       k.CreatedAt,
		signer:        cryptosigner.Opaque(k.Private),
		userHeader:    enc(TypeUser),
		limitedHeader: enc(TypeLimitedUser),
	}
}

// encodeExtra renders extra claims as `,"k":v` pairs, keys sorted.
func encodeExtra(extra map[string]any) ([]byte, error) {
	if len(extra) == 0 {
		return nil, nil
	}
	names := make([]string, 0, len(extra))
	for k := range extra {
		if sdk.IsReservedClaim(k) && k != "sid" {
			return nil, fmt.Errorf("extra claim %q is reserved (sdk.ReservedClaims): the issuer sets it or consumers act on it", k)
		}
		if !utf8.ValidString(k) {
			return nil, errors.New("an extra claim name is not valid UTF-8")
		}
		names = append(names, k)
	}
	sort.Strings(names)
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	for _, k := range names {
		out.WriteByte(',')
		out.Write(appendJSString(nil, k))
		out.WriteByte(':')
		if err := enc.Encode(extra[k]); err != nil {
			return nil, fmt.Errorf("encoding extra claim %q: %w", k, err)
		}
		out.Truncate(out.Len() - 1) // Encode's newline
	}
	return out.Bytes(), nil
}

// validateEntityRef checks that ref parses as Backstage's parseEntityRef
// does without defaults: "kind:[namespace/]name", with kind and name (and
// namespace, when there is a slash) non-empty.
func validateEntityRef(ref string) error {
	if !utf8.ValidString(ref) {
		return errors.New("not valid UTF-8")
	}
	colon := strings.IndexByte(ref, ':')
	slash := strings.IndexByte(ref, '/')
	if slash != -1 && slash < colon {
		colon = -1
	}
	if colon <= 0 {
		return fmt.Errorf("entity ref %q has no kind (want kind:namespace/name)", ref)
	}
	name := ref[max(colon+1, slash+1):]
	if slash != -1 && slash == colon+1 {
		return fmt.Errorf("entity ref %q has an empty namespace", ref)
	}
	if name == "" {
		return fmt.Errorf("entity ref %q has no name", ref)
	}
	return nil
}
