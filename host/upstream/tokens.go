package upstream

import (
	"fmt"
	"net/url"
	"reflect"
	"strings"
	"time"
)

// Tokens is what a sign-in or a refresh yields. Keep it server-side: every
// token field is a credential. String redacts them, so logging a Tokens
// value by mistake leaks nothing.
type Tokens struct {
	// IDToken is the verified ID token (never the Palette session token).
	IDToken string `json:"idToken,omitempty"`
	// AccessToken is the OAuth access token.
	AccessToken string `json:"accessToken,omitempty"`
	// RefreshToken is a real refresh token, "" when the provider issued none.
	RefreshToken string `json:"refreshToken,omitempty"`
	// PaletteSessionToken is SpectroCloud's HS256 session token, which
	// Palette returns in refresh_token. It authenticates Palette REST calls
	// (header "Authorization: <token>"); never use it as an ID token.
	PaletteSessionToken string `json:"paletteSessionToken,omitempty"`
	// TokenType is the access token's type, normally "Bearer".
	TokenType string `json:"tokenType,omitempty"`
	// Scope is the granted scope, "" when the provider did not say.
	Scope string `json:"scope,omitempty"`
	// AccessTokenExpiry is zero when the provider sent no expires_in.
	AccessTokenExpiry time.Time `json:"accessTokenExpiry,omitzero"`
	// IDTokenExpiry is the ID token's exp.
	IDTokenExpiry time.Time `json:"idTokenExpiry,omitzero"`
	// Claims are the verified ID token's claims (JSON numbers as float64),
	// plus userinfo claims the ID token lacks when the provider's userinfo
	// was read (see Config.DisableUserinfo).
	Claims map[string]any `json:"claims,omitempty"`
	// Profile is derived from Claims.
	Profile Profile `json:"profile"`

	// fromIDToken, set by Exchange and Refresh, records that Claims were
	// decoded from IDToken with nothing added (see ClaimsAreIDTokens).
	fromIDToken claimsSource
}

// claimsSource is the ID token a Tokens value's Claims were decoded from,
// and that map and its size then.
type claimsSource struct {
	idToken string
	claims  map[string]any
	n       int
}

// sameMap reports whether a and b are the same map, not equal ones.
func sameMap(a, b map[string]any) bool {
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

// ClaimsAreIDTokens reports whether t.Claims are known to be exactly the
// claims of t.IDToken: Exchange or Refresh decoded them from it, verified,
// and added no userinfo claims. A caller that stores t may then store the
// ID token alone and decode Claims from it again, without decoding it now
// to compare. It is false when not known: for Tokens built or decoded
// elsewhere, or whose IDToken or Claims were replaced or grew since.
// Changing a claim's value in place is not detected; Claims are verified
// claims and nothing changes them.
func (t *Tokens) ClaimsAreIDTokens() bool {
	src := t.fromIDToken
	return src.idToken != "" && src.idToken == t.IDToken && t.Claims != nil &&
		sameMap(src.claims, t.Claims) && src.n == len(t.Claims)
}

// String describes t without any token value.
func (t Tokens) String() string {
	has := func(s string) string {
		if s == "" {
			return "no"
		}
		return "yes"
	}
	return fmt.Sprintf("Tokens{sub=%q iss=%q idToken=%s accessToken=%s refreshToken=%s paletteSessionToken=%s scope=%q idTokenExpiry=%s}",
		t.Profile.Subject, t.Profile.Issuer, has(t.IDToken), has(t.AccessToken), has(t.RefreshToken), has(t.PaletteSessionToken),
		t.Scope, t.IDTokenExpiry.UTC().Format(time.RFC3339))
}

// GoString redacts like String, for %#v.
func (t Tokens) GoString() string { return "upstream." + t.String() }

// Profile is the user as the provider describes them.
type Profile struct {
	// Email is set only when verified: email_verified is the boolean true,
	// or absent and the configuration trusts such emails.
	Email string `json:"email,omitempty"`
	// EmailVerified is true only when email_verified is the boolean true.
	EmailVerified bool `json:"emailVerified,omitempty"`
	// DisplayName is name, else given_name and family_name, else Email.
	DisplayName string `json:"displayName,omitempty"`
	// Picture is an http(s) URL, else "".
	Picture           string   `json:"picture,omitempty"`
	Subject           string   `json:"sub,omitempty"`
	Issuer            string   `json:"iss,omitempty"`
	PreferredUsername string   `json:"preferredUsername,omitempty"`
	Groups            []string `json:"groups,omitempty"`
}

// ProfileFromClaims derives a Profile from ID token (or userinfo) claims.
// Claims of the wrong type are ignored. groups may be an array of strings or
// a single string.
func ProfileFromClaims(claims map[string]any, trustEmailWithoutVerified bool) Profile {
	str := func(k string) string {
		s, _ := claims[k].(string)
		return strings.TrimSpace(s)
	}
	p := Profile{
		Subject:           str("sub"),
		Issuer:            str("iss"),
		PreferredUsername: str("preferred_username"),
	}
	if email := str("email"); email != "" {
		v, present := claims["email_verified"]
		verified, isBool := v.(bool)
		switch {
		case isBool && verified:
			p.Email, p.EmailVerified = email, true
		case !present && trustEmailWithoutVerified:
			p.Email = email
		}
	}
	switch {
	case str("name") != "":
		p.DisplayName = str("name")
	case str("given_name") != "" || str("family_name") != "":
		p.DisplayName = strings.TrimSpace(str("given_name") + " " + str("family_name"))
	default:
		p.DisplayName = p.Email
	}
	if pic := str("picture"); pic != "" {
		if u, err := url.Parse(pic); err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != "" {
			p.Picture = pic
		}
	}
	switch g := claims["groups"].(type) {
	case string:
		if s := strings.TrimSpace(g); s != "" {
			p.Groups = []string{s}
		}
	case []string:
		for _, s := range g {
			if s = strings.TrimSpace(s); s != "" {
				p.Groups = append(p.Groups, s)
			}
		}
	case []any:
		for _, v := range g {
			if s, ok := v.(string); ok && strings.TrimSpace(s) != "" {
				p.Groups = append(p.Groups, strings.TrimSpace(s))
			}
		}
	}
	return p
}
