// Package session keeps server-side sign-in sessions.
//
// The browser holds only an opaque handle: 32 random bytes, base64url, in
// the refresh cookie. Stores key sessions by the SHA-256 of the handle, so a
// leaked store (files, database rows) yields no cookie anyone can use. A
// session holds what refresh needs without going back to the user: the
// Backstage identity, the profile, the upstream (SpectroCloud) tokens and
// the last Backstage token issued.
package session

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
	"unique"
)

// ErrNotFound is returned by Store.Get for a handle with no live session:
// never stored, deleted, expired, or malformed.
var ErrNotFound = errors.New("session: not found")

// ErrExpired is returned by Store.Put for a session whose ExpiresAt has
// passed.
var ErrExpired = errors.New("session: storing a session that has already expired")

// ErrClosed is returned by a Store used after Close.
var ErrClosed = errors.New("session: store is closed")

// HandleBytes is the number of random bytes in a handle.
const HandleBytes = 32

// handleLen is the length of a handle: HandleBytes in unpadded base64url,
// ceil(32*8/6).
const handleLen = 43

// NewHandle returns a fresh session handle: 32 random bytes, unpadded
// base64url (43 characters, cookie-safe). It is a credential: never log it.
func NewHandle() (string, error) {
	var b [HandleBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("session: making a handle: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// Key is what stores index a session by: the SHA-256 of its handle. It may
// be logged and stored; the handle cannot be derived from it.
type Key [sha256.Size]byte

// String is the key in lowercase hex (64 characters); the file store uses it
// as the file name.
func (k Key) String() string { return hex.EncodeToString(k[:]) }

// KeyOf derives the store key of a handle. It fails for anything that is
// not a well-formed handle (43 base64url characters), so stores never look
// up attacker-chosen garbage.
func KeyOf(handle string) (Key, error) {
	if !wellFormed(handle) {
		return Key{}, errMalformedHandle
	}
	var b [handleLen]byte // a stack copy avoids a heap []byte on the hot path
	copy(b[:], handle)
	return sha256.Sum256(b[:]), nil
}

var errMalformedHandle = errors.New("session: malformed handle")

// wellFormed reports whether h is the canonical unpadded base64url encoding
// of HandleBytes bytes. Only canonical encodings pass, so one handle has one
// spelling and one key.
func wellFormed(h string) bool {
	if len(h) != handleLen {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	// 43 characters carry 258 bits for 256: the last character's two low
	// bits must be zero.
	return base64URLValue(h[len(h)-1])&3 == 0
}

func base64URLValue(c byte) byte {
	switch {
	case 'A' <= c && c <= 'Z':
		return c - 'A'
	case 'a' <= c && c <= 'z':
		return c - 'a' + 26
	case '0' <= c && c <= '9':
		return c - '0' + 52
	case c == '-':
		return 62
	default: // '_'
		return 63
	}
}

// Session is one signed-in browser session. Other packages fill it; stores
// persist it as JSON.
type Session struct {
	// Env is Backstage's environment name (development, production, ...).
	Env string `json:"env"`
	// Provider is the auth provider id, "spectrocloud".
	Provider string `json:"provider"`
	// CreatedAt is when the user signed in.
	CreatedAt time.Time `json:"createdAt"`
	// ExpiresAt is when the session ends; stores drop it then. Required.
	ExpiresAt time.Time `json:"expiresAt"`

	// UserEntityRef is the Backstage user, e.g. "user:default/alice".
	UserEntityRef string `json:"userEntityRef"`
	// OwnershipEntityRefs are the user's ownership refs.
	OwnershipEntityRefs []string `json:"ownershipEntityRefs,omitempty"`
	// Profile is what Backstage shows for the user.
	Profile Profile `json:"profile"`
	// Scope is the granted scope, space-separated.
	Scope string `json:"scope,omitempty"`

	// Upstream holds the SpectroCloud tokens.
	Upstream UpstreamTokens `json:"upstream"`
	// Backstage is the last Backstage token issued for this session, for
	// refresh to reuse while it has time left; nil when none.
	Backstage *BackstageToken `json:"backstage,omitempty"`

	// Kind is KindBrowser (Backstage's app, the refresh cookie) or KindCLI
	// (a program on the user's machine). A session of one kind is never
	// served to a caller of the other.
	Kind Kind `json:"kind,omitempty"`
	// RefreshGeneration counts the refresh tokens a KindCLI session issued:
	// only the latest is valid, and presenting an earlier one ends the
	// session (refresh token reuse detection).
	RefreshGeneration uint64 `json:"refreshGeneration,omitempty"`

	// recordSize is the size of the session's put record in the file
	// store's journal, for its count of live bytes; not stored.
	recordSize int64
}

// Kind says who holds a session.
type Kind string

// Session kinds.
const (
	// KindBrowser is a session of Backstage's app (the zero value, so
	// sessions stored before kinds existed are browser sessions).
	KindBrowser Kind = ""
	// KindCLI is a command-line session (spectroauthd login).
	KindCLI Kind = "cli"
)

// Profile is the user's profile as Backstage's frontend receives it.
type Profile struct {
	Email       string `json:"email,omitempty"`
	DisplayName string `json:"displayName,omitempty"`
	Picture     string `json:"picture,omitempty"`
}

// UpstreamTokens are the identity provider's tokens and what was read from
// them. They are secrets: String redacts them.
type UpstreamTokens struct {
	IDToken             string `json:"idToken,omitempty"`
	AccessToken         string `json:"accessToken,omitempty"`
	RefreshToken        string `json:"refreshToken,omitempty"`
	PaletteSessionToken string `json:"paletteSessionToken,omitempty"`
	// PaletteSessionTokenExpiry is when PaletteSessionToken runs out, as
	// its last renewal learnt it; zero when unknown (read the token's exp,
	// else renew it before use).
	PaletteSessionTokenExpiry time.Time       `json:"paletteSessionTokenExpiry,omitzero"`
	TokenType                 string          `json:"tokenType,omitempty"`
	AccessTokenExpiry         time.Time       `json:"accessTokenExpiry,omitzero"`
	IDTokenExpiry             time.Time       `json:"idTokenExpiry,omitzero"`
	Claims                    json.RawMessage `json:"claims,omitempty"`
	// IDTokenNotRenewed records that the last upstream refresh answered
	// without a new ID token (OpenID Connect allows it), so asking again
	// before the access token runs out would get the same answer.
	IDTokenNotRenewed bool `json:"idTokenNotRenewed,omitempty"`
	// CheckedAt is when the provider last vouched for the session (an
	// answered refresh or userinfo revalidation); zero means at sign-in
	// (the session's CreatedAt). Revalidation is due revalidateInterval
	// after it.
	CheckedAt time.Time `json:"checkedAt,omitzero"`
}

// String describes the tokens without revealing them, so a session printed
// by mistake leaks nothing.
func (u UpstreamTokens) String() string {
	return fmt.Sprintf("{tokens redacted, type %q, access expiry %s, id expiry %s}",
		u.TokenType, u.AccessTokenExpiry.UTC().Format(time.RFC3339), u.IDTokenExpiry.UTC().Format(time.RFC3339))
}

// GoString is String, for %#v.
func (u UpstreamTokens) GoString() string { return u.String() }

// BackstageToken is a cached Backstage identity token.
type BackstageToken struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// String describes the token without revealing it.
func (b BackstageToken) String() string {
	return "{token redacted, expires " + b.ExpiresAt.UTC().Format(time.RFC3339) + "}"
}

// GoString is String, for %#v.
func (b BackstageToken) GoString() string { return b.String() }

// Clone returns a deep copy of s.
func (s *Session) Clone() *Session {
	if s == nil {
		return nil
	}
	c := *s
	c.OwnershipEntityRefs = slices.Clone(s.OwnershipEntityRefs)
	c.Upstream.Claims = slices.Clone(s.Upstream.Claims)
	if s.Backstage != nil {
		b := *s.Backstage
		c.Backstage = &b
	}
	return &c
}

// intern shares the strings most sessions have in common (environment,
// provider, scope, entity refs), so thousands of sessions in memory hold one
// copy of each rather than one per session.
func (s *Session) intern() {
	in := func(v *string) { *v = unique.Make(*v).Value() }
	in(&s.Env)
	in(&s.Provider)
	in(&s.Scope)
	in(&s.UserEntityRef)
	in(&s.Upstream.TokenType)
	for i := range s.OwnershipEntityRefs {
		in(&s.OwnershipEntityRefs[i])
	}
}

// Expired reports whether the session has ended at now.
func (s *Session) Expired(now time.Time) bool { return !now.Before(s.ExpiresAt) }

// Store keeps sessions by the Key of their handle (see KeyOf). Implementations must be safe for
// concurrent use; Get is on the /refresh hot path and must not serialise
// callers. The file store suits one daemon; the PostgreSQL store
// (host/storage/postgres: a table keyed by the Key, with expires_at indexed
// for the sweep) lets replicas share sessions, so a logout on one is seen by
// all. Every store passes the suite in host/session/sessiontest.
type Store interface {
	// Get returns a copy of the live session for key, or ErrNotFound.
	Get(ctx context.Context, key Key) (*Session, error)
	// Put stores s under key, replacing any session there. The store
	// keeps its own copy.
	Put(ctx context.Context, key Key, s *Session) error
	// Replace stores s under key only while a live session is there, and
	// returns ErrNotFound otherwise, atomically with Delete: a renewal that
	// finishes after a sign-out must not bring the session back. (In
	// PostgreSQL: an UPDATE of the row that must exist and be unexpired.)
	// The store keeps its own copy.
	Replace(ctx context.Context, key Key, s *Session) error
	// Delete removes the session for key; deleting nothing is no error.
	Delete(ctx context.Context, key Key) error
	// Sweep removes expired sessions and returns how many it removed.
	Sweep(ctx context.Context) (int, error)
	// ListByUser returns the live sessions of the Backstage user
	// userEntityRef (browser and command-line alike), in no set order.
	ListByUser(ctx context.Context, userEntityRef string) ([]Entry, error)
	// DeleteByUser removes every session of userEntityRef and returns how
	// many it removed: sign out everywhere.
	DeleteByUser(ctx context.Context, userEntityRef string) (int, error)
	// Close stops background work and releases resources.
	Close() error
}

// Entry is a stored session with its key, as ListByUser returns it.
type Entry struct {
	Key     Key
	Session *Session
}

// RenewalLocker is a Store shared by processes (replicas) that renew the
// same sessions. Renewal spends the session's upstream refresh token, which
// a provider that rotates refresh tokens accepts once: two replicas renewing
// one session together would have the second refused and the session ended.
// The server takes the lock around each renewal and re-reads the session
// under it, so the second replica finds the first one's result.
//
// LockRenewal returns once no other holder has key's renewal lock, or fails
// with ErrNotFound when the session is gone, or with ctx's error. A lock
// whose holder died is free again after the store's lease. unlock is
// idempotent and must be called.
type RenewalLocker interface {
	LockRenewal(ctx context.Context, key Key) (unlock func(), err error)
}

// Validate checks a session before a store keeps it: not nil, with an
// ExpiresAt that has not passed at now (ErrExpired otherwise). Stores
// outside this package call it in Put and Replace, as the ones here do.
func Validate(s *Session, now time.Time) error { return validate(s, now) }

// validate checks a session before it is stored.
func validate(s *Session, now time.Time) error {
	if s == nil {
		return errors.New("session: storing a nil session")
	}
	if s.ExpiresAt.IsZero() {
		return errors.New("session: storing a session without ExpiresAt")
	}
	if s.Expired(now) {
		return ErrExpired
	}
	return nil
}
