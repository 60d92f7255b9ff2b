package identity

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

func TestNewConfig(t *testing.T) {
	ks := NewMemoryKeyStore()
	tests := []struct {
		name    string
		cfg     Config
		want    time.Duration
		wantErr string
	}{
		{name: "default lifetime", cfg: Config{Issuer: testIssuer, KeyStore: ks}, want: time.Hour},
		{name: "minimum", cfg: Config{Issuer: testIssuer, KeyStore: ks, Lifetime: 10 * time.Minute}, want: 10 * time.Minute},
		{name: "maximum", cfg: Config{Issuer: testIssuer, KeyStore: ks, Lifetime: 24 * time.Hour}, want: 24 * time.Hour},
		{name: "too short", cfg: Config{Issuer: testIssuer, KeyStore: ks, Lifetime: 9 * time.Minute}, wantErr: "Config.Lifetime 9m0s is out of range"},
		{name: "too long", cfg: Config{Issuer: testIssuer, KeyStore: ks, Lifetime: 25 * time.Hour}, wantErr: "Config.Lifetime 25h0m0s is out of range"},
		{name: "negative", cfg: Config{Issuer: testIssuer, KeyStore: ks, Lifetime: -time.Hour}, wantErr: "Config.Lifetime"},
		{name: "fractional seconds", cfg: Config{Issuer: testIssuer, KeyStore: ks, Lifetime: time.Hour + time.Millisecond}, wantErr: "whole number of seconds"},
		{name: "no issuer", cfg: Config{KeyStore: ks}, wantErr: "Config.Issuer is required"},
		{name: "no key store", cfg: Config{Issuer: testIssuer}, wantErr: "Config.KeyStore is required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			iss, err := New(tc.cfg)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if iss.Lifetime() != tc.want {
				t.Errorf("Lifetime = %v, want %v", iss.Lifetime(), tc.want)
			}
		})
	}
}

func TestIssueShape(t *testing.T) {
	tests := []struct {
		name   string
		claims Claims
		ent    []string // want "ent" in the token; nil: absent
		extra  map[string]any
	}{
		{
			name:   "ent left out",
			claims: Claims{Subject: "user:default/alice", Ent: []string{"user:default/alice", "group:default/team-a"}},
		},
		{
			name:   "ent included",
			claims: Claims{Subject: "user:default/alice", Ent: []string{"user:default/alice", "group:default/team-a"}, IncludeEnt: true},
			ent:    []string{"user:default/alice", "group:default/team-a"},
		},
		{
			name:   "ent defaults to the subject",
			claims: Claims{Subject: "user:default/bob", IncludeEnt: true},
			ent:    []string{"user:default/bob"},
		},
		{
			name:   "extra claims",
			claims: Claims{Subject: "user:default/carol", Extra: map[string]any{"email": "c@x.com", "n": 3, "tags": []string{"<a>"}}},
			extra:  map[string]any{"email": "c@x.com", "n": float64(3), "tags": []any{"<a>"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, nil)
			tok := f.issue(t, tc.claims)
			h, p, _ := parts(t, tok.Raw)
			kid := f.iss.set.Load().signer.id
			wantHeader := `{"typ":"vnd.backstage.user","alg":"ES256","kid":"` + kid + `"}`
			if string(h) != wantHeader {
				t.Errorf("header = %s, want %s", h, wantHeader)
			}
			var payload map[string]any
			if err := json.Unmarshal(p, &payload); err != nil {
				t.Fatal(err)
			}
			now := f.clock.Now().Unix()
			if payload["iss"] != testIssuer || payload["sub"] != tc.claims.Subject || payload["aud"] != "backstage" {
				t.Errorf("payload = %s", p)
			}
			if payload["iat"] != float64(now) || payload["exp"] != float64(now+3600) {
				t.Errorf("iat/exp = %v/%v, want %d/%d", payload["iat"], payload["exp"], now, now+3600)
			}
			if !tok.IssuedAt.Equal(time.Unix(now, 0)) || !tok.ExpiresAt.Equal(time.Unix(now+3600, 0)) {
				t.Errorf("Token times = %v/%v", tok.IssuedAt, tok.ExpiresAt)
			}
			if uip, _ := payload["uip"].(string); len(uip) != 86 {
				t.Errorf("uip = %q, want an 86-character ES256 signature segment", uip)
			}
			ent, has := payload["ent"]
			if (tc.ent != nil) != has {
				t.Fatalf("ent present = %v, want %v", has, tc.ent != nil)
			}
			if has && fmt.Sprint(ent) != fmt.Sprint(tc.ent) {
				t.Errorf("ent = %v, want %v", ent, tc.ent)
			}
			for k, v := range tc.extra {
				if fmt.Sprint(payload[k]) != fmt.Sprint(v) {
					t.Errorf("extra %s = %v, want %v", k, payload[k], v)
				}
			}
			wantClaims := 6 + len(tc.extra) // iss sub aud iat exp uip
			if has {
				wantClaims++
			}
			if len(payload) != wantClaims {
				t.Errorf("payload has %d claims, want %d: %s", len(payload), wantClaims, p)
			}
			// The signature verifies with the published key (go-jose, over the
			// bytes as sent).
			keys := jwksKeys(t, f.iss.JWKS())
			jws, err := jose.ParseSignedCompact(tok.Raw, []jose.SignatureAlgorithm{jose.ES256})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := jws.Verify(keys[kid].Key); err != nil {
				t.Fatalf("signature does not verify with the JWKS key: %v", err)
			}
			// And the token passes our own Verify.
			v, err := f.iss.Verify(context.Background(), tok.Raw)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if v.Type != TypeUser || v.Subject != tc.claims.Subject || v.KeyID != kid {
				t.Errorf("Verify = %+v", v)
			}
		})
	}
}

func TestIssueRejects(t *testing.T) {
	tests := []struct {
		name    string
		claims  Claims
		wantErr string
	}{
		{"empty subject", Claims{}, "has no kind"},
		{"no kind", Claims{Subject: "default/alice"}, "has no kind"},
		{"empty kind", Claims{Subject: ":default/alice"}, "has no kind"},
		{"empty namespace", Claims{Subject: "user:/alice"}, "empty namespace"},
		{"no name", Claims{Subject: "user:default/"}, "has no name"},
		{"invalid utf-8", Claims{Subject: "user:default/\xff"}, "not valid UTF-8"},
		{"invalid utf-8 ent", Claims{Subject: "user:default/a", Ent: []string{"group:default/\xfe"}}, "not valid UTF-8"},
		{"reserved extra", Claims{Subject: "user:default/a", Extra: map[string]any{"exp": 1}}, `extra claim "exp"`},
		{"reserved obo", Claims{Subject: "user:default/a", Extra: map[string]any{"obo": "x"}}, `extra claim "obo"`},
		{"reserved act", Claims{Subject: "user:default/a", Extra: map[string]any{"act": "x"}}, `extra claim "act"`},
		{"reserved azp", Claims{Subject: "user:default/a", Extra: map[string]any{"azp": "x"}}, `extra claim "azp"`},
		{"reserved nbf", Claims{Subject: "user:default/a", Extra: map[string]any{"nbf": 1}}, `extra claim "nbf"`},
		{"unmarshalable extra", Claims{Subject: "user:default/a", Extra: map[string]any{"f": func() {}}}, `extra claim "f"`},
		{"too large", Claims{Subject: "user:default/a", IncludeEnt: true, Ent: manyRefs(800)}, "over the 32768 limit"},
	}
	f := newFixture(t, nil)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.iss.Issue(context.Background(), tc.claims)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
	// The same ent fits when left out of the token.
	if _, err := f.iss.Issue(context.Background(), Claims{Subject: "user:default/a", Ent: manyRefs(800)}); err != nil {
		t.Fatalf("large ent left out of the token: %v", err)
	}
}

func manyRefs(n int) []string {
	refs := make([]string, n)
	for i := range refs {
		refs[i] = fmt.Sprintf("group:default/some-rather-long-group-name-%04d", i)
	}
	return refs
}

// jsStringify mimics JSON.stringify for the limited token's header and
// payload with encoding/json, independently of the issuer's own encoder:
// struct fields keep declaration order; JSON.stringify escapes neither HTML
// characters nor U+2028/U+2029, which encoding/json always escapes.
func jsStringify(t testing.TB, v any) []byte {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	out := bytes.TrimSuffix(b.Bytes(), []byte("\n"))
	out = bytes.ReplaceAll(out, []byte(`\u2028`), []byte("\u2028"))
	out = bytes.ReplaceAll(out, []byte(`\u2029`), []byte("\u2029"))
	return out
}

// rebuildLimited does what Backstage's UserTokenHandler.createLimitedUserToken
// does: decode the user token, and rebuild the limited token from its
// header's alg and kid and its payload's sub, iat and exp, plus uip.
func rebuildLimited(t testing.TB, raw string) string {
	t.Helper()
	h, p, _ := parts(t, raw)
	var header struct{ Alg, Kid string }
	if err := json.Unmarshal(h, &header); err != nil {
		t.Fatal(err)
	}
	var payload struct {
		Sub      string
		Iat, Exp int64
		Uip      string
	}
	if err := json.Unmarshal(p, &payload); err != nil {
		t.Fatal(err)
	}
	lh := jsStringify(t, struct {
		Typ string `json:"typ"`
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}{TypeLimitedUser, header.Alg, header.Kid})
	lp := jsStringify(t, struct {
		Sub string `json:"sub"`
		Iat int64  `json:"iat"`
		Exp int64  `json:"exp"`
	}{payload.Sub, payload.Iat, payload.Exp})
	return base64.RawURLEncoding.EncodeToString(lh) + "." + base64.RawURLEncoding.EncodeToString(lp) + "." + payload.Uip
}

// oddSubjects are entity refs whose JSON encoding differs between naive
// encoders and JSON.stringify.
var oddSubjects = []struct{ name, sub string }{
	{"plain", "user:default/alice"},
	{"unicode", "user:default/jöhn-ßø-日本語"},
	{"emoji (surrogate pair in JS)", "user:default/🦄"},
	{"double quotes", `user:default/o"brien"`},
	{"single quote", "user:default/o'brien"},
	{"backslash", `user:default/back\slash`},
	{"html characters", "user:default/<script>&amp;</script>"},
	{"control characters", "user:default/tab\there\nnl\x01\x1f\x7f"},
	{"line separators", "user:default/a\u2028b\u2029c"},
	{"slash and colon in name", "user:ns/na:me/x"},
}

func TestUIPRebuildsLimitedToken(t *testing.T) {
	f := newFixture(t, nil)
	for _, tc := range oddSubjects {
		t.Run(tc.name, func(t *testing.T) {
			tok := f.issue(t, Claims{Subject: tc.sub})
			limited := rebuildLimited(t, tok.Raw)

			// Byte for byte: the header and payload segments are what
			// JSON.stringify makes.
			h, p, _ := parts(t, limited)
			kid := f.iss.set.Load().signer.id
			if want := `{"typ":"vnd.backstage.limited-user","alg":"ES256","kid":"` + kid + `"}`; string(h) != want {
				t.Errorf("limited header = %s, want %s", h, want)
			}
			var lp struct{ Sub string }
			if err := json.Unmarshal(p, &lp); err != nil || lp.Sub != tc.sub {
				t.Errorf("limited payload %s: sub %q, err %v", p, lp.Sub, err)
			}

			// The rebuilt token verifies with the published key.
			keys := jwksKeys(t, f.iss.JWKS())
			jws, err := jose.ParseSignedCompact(limited, []jose.SignatureAlgorithm{jose.ES256})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := jws.Verify(keys[kid].Key); err != nil {
				t.Fatalf("rebuilt limited token does not verify: %v\nheader %s\npayload %s", err, h, p)
			}
			// And with our Verify.
			v, err := f.iss.Verify(context.Background(), limited)
			if err != nil {
				t.Fatalf("Verify(limited): %v", err)
			}
			if v.Type != TypeLimitedUser || v.Subject != tc.sub || !v.ExpiresAt.Equal(tok.ExpiresAt) || v.Ent != nil {
				t.Errorf("Verify(limited) = %+v", v)
			}
		})
	}
}

func TestJSStringMatchesEncodingJSON(t *testing.T) {
	// For strings without U+2028/U+2029, JSON.stringify and encoding/json
	// with HTML escaping off agree; check every byte below 0x80 and a few
	// multi-byte runes.
	var all []string
	for c := range 0x80 {
		all = append(all, "a"+string(rune(c))+"b")
	}
	all = append(all, "é", "日本", "🦄", "")
	for _, s := range all {
		got := appendJSString(nil, s)
		want := jsStringify(t, s)
		if !bytes.Equal(got, want) {
			t.Errorf("appendJSString(%q) = %s, want %s", s, got, want)
		}
	}
	if got := string(appendJSString(nil, "\u2028")); got != "\"\u2028\"" {
		t.Errorf("U+2028 is escaped: %s", got)
	}
}

func TestRotation(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	life := time.Hour
	kid := func() string { return f.iss.set.Load().signer.id }
	jwksKids := func() []string {
		var ids []string
		for id := range jwksKeys(t, f.iss.JWKS()) {
			ids = append(ids, id)
		}
		return ids
	}

	if got := jwksKids(); len(got) != 0 {
		t.Fatalf("JWKS before the first token = %v", got)
	}
	first := f.issue(t, Claims{Subject: "user:default/a"})
	a := kid()
	// The JWKS is cached: the same bytes until something changes.
	j1, j2 := f.iss.JWKS(), f.iss.JWKS()
	if &j1[0] != &j2[0] {
		t.Error("JWKS rebuilt without a rotation")
	}

	f.clock.Advance(life - time.Second)
	late := f.issue(t, Claims{Subject: "user:default/a"})
	if kid() != a {
		t.Fatal("rotated before the key was one lifetime old")
	}
	f.clock.Advance(time.Second) // A is exactly one lifetime old
	f.issue(t, Claims{Subject: "user:default/a"})
	b := kid()
	if b == a {
		t.Fatal("did not rotate after one lifetime")
	}
	if got := jwksKids(); len(got) != 2 {
		t.Fatalf("JWKS after one rotation = %v, want A and B", got)
	}
	// A token A signed just before the rotation still verifies.
	if _, err := f.iss.Verify(ctx, late.Raw); err != nil {
		t.Fatalf("token signed by the previous key: %v", err)
	}
	if _, err := f.iss.Verify(ctx, first.Raw); err == nil {
		t.Fatal("a token one lifetime old verified")
	}

	f.clock.Advance(life)
	f.issue(t, Claims{Subject: "user:default/a"})
	c := kid()
	if got := jwksKids(); len(got) != 3 {
		t.Fatalf("JWKS after two rotations = %v, want A, B and C", got)
	}

	// A turns three lifetimes old: it leaves the JWKS (and the store) even
	// without a token being issued.
	f.clock.Advance(life - time.Second)
	if got := jwksKids(); len(got) != 3 {
		t.Fatalf("JWKS just before A is 3 lifetimes old = %v", got)
	}
	f.clock.Advance(time.Second)
	got := jwksKeys(t, f.iss.JWKS())
	if _, ok := got[a]; ok || len(got) != 2 {
		t.Fatalf("JWKS after A is 3 lifetimes old = %v, want B and C", got)
	}
	if _, ok := got[b]; !ok {
		t.Fatal("B left the JWKS early")
	}
	stored, _ := f.keys.ListKeys(ctx)
	for _, k := range stored {
		if k.ID == a {
			t.Fatal("A is still in the key store")
		}
	}
	// C is now one lifetime old too: the next token rotates.
	f.issue(t, Claims{Subject: "user:default/a"})
	if kid() == c {
		t.Fatal("C still signs after one lifetime")
	}

	// Much later: everything old goes, one fresh key remains.
	f.clock.Advance(10 * life)
	f.issue(t, Claims{Subject: "user:default/a"})
	if got := jwksKids(); len(got) != 1 || got[0] != kid() {
		t.Fatalf("JWKS after a long pause = %v", got)
	}
}

func TestRestartKeepsTokensValid(t *testing.T) {
	dir := t.TempDir()
	ks, err := OpenFileKeyStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, ks)
	tok := f.issue(t, Claims{Subject: "user:default/alice"})
	limited := rebuildLimited(t, tok.Raw)
	jwks := f.iss.JWKS()
	kid := f.iss.set.Load().signer.id

	// "Restart": reopen the directory, new Issuer, a little later.
	ks2, err := OpenFileKeyStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	clock := f.clock
	clock.Advance(10 * time.Minute)
	iss2, err := New(Config{Issuer: testIssuer, KeyStore: ks2, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	for _, raw := range []string{tok.Raw, limited} {
		if _, err := iss2.Verify(context.Background(), raw); err != nil {
			t.Fatalf("token from before the restart: %v", err)
		}
	}
	if !bytes.Equal(iss2.JWKS(), jwks) {
		t.Errorf("JWKS changed across the restart:\n%s\n%s", jwks, iss2.JWKS())
	}
	tok2, err := iss2.Issue(context.Background(), Claims{Subject: "user:default/alice"})
	if err != nil {
		t.Fatal(err)
	}
	if got := iss2.set.Load().signer.id; got != kid {
		t.Errorf("after restart signs with %s, want the still-young key %s", got, kid)
	}
	if _, err := f.iss.Verify(context.Background(), tok2.Raw); err != nil {
		t.Errorf("old instance cannot verify the new instance's token: %v", err)
	}
}

func TestVerifyRejects(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	tok := f.issue(t, Claims{Subject: "user:default/alice"})
	limited := rebuildLimited(t, tok.Raw)
	key := f.currentKey(t)
	now := f.clock.Now().Unix()
	hdr := func(typ string) string {
		return fmt.Sprintf(`{"typ":%q,"alg":"ES256","kid":%q}`, typ, key.ID)
	}
	userPayload := func(mod string) string {
		base := fmt.Sprintf(`"iss":%q,"sub":"user:default/alice","aud":"backstage","iat":%d,"exp":%d`, testIssuer, now, now+3600)
		return "{" + base + mod + "}"
	}

	// A key that is not ours, under our kid and under its own.
	other := newFixture(t, nil)
	other.issue(t, Claims{Subject: "user:default/alice"})
	foreign := other.currentKey(t)

	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	dot := strings.LastIndexByte(tok.Raw, '.')

	tests := []struct {
		name    string
		raw     string
		expired bool
	}{
		{name: "garbage", raw: "not a token"},
		{name: "empty", raw: ""},
		{name: "tampered signature", raw: flip(tok.Raw, dot+5)},
		{name: "tampered payload", raw: flip(tok.Raw, dot-5)},
		{name: "tampered limited signature", raw: flip(limited, len(limited)-10)},
		{name: "uip of another subject", raw: strings.Replace(limited, strings.Split(limited, ".")[1], base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"user:default/mallory","iat":`+fmt.Sprint(now)+`,"exp":`+fmt.Sprint(now+3600)+`}`)), 1)},
		{name: "typ JWT", raw: signRaw(t, key.Private, hdr("JWT"), userPayload(""))},
		{name: "no typ", raw: signRaw(t, key.Private, fmt.Sprintf(`{"alg":"ES256","kid":%q}`, key.ID), userPayload(""))},
		{name: "plugin typ", raw: signRaw(t, key.Private, hdr("vnd.backstage.plugin"), userPayload(""))},
		{name: "no kid", raw: signRaw(t, key.Private, `{"typ":"vnd.backstage.user","alg":"ES256"}`, userPayload(""))},
		{name: "foreign key under our kid", raw: signRaw(t, foreign.Private, hdr(TypeUser), userPayload(""))},
		{name: "foreign key and kid", raw: signRaw(t, foreign.Private, fmt.Sprintf(`{"typ":%q,"alg":"ES256","kid":%q}`, TypeUser, foreign.ID), userPayload(""))},
		{name: "alg none", raw: base64.RawURLEncoding.EncodeToString([]byte(`{"typ":"vnd.backstage.user","alg":"none","kid":"`+key.ID+`"}`)) + "." + base64.RawURLEncoding.EncodeToString([]byte(userPayload(""))) + "."},
		{name: "wrong issuer", raw: signRaw(t, key.Private, hdr(TypeUser), strings.Replace(userPayload(""), testIssuer, "https://evil.example.com/api/auth", 1))},
		{name: "wrong audience", raw: signRaw(t, key.Private, hdr(TypeUser), strings.Replace(userPayload(""), `"aud":"backstage"`, `"aud":"catalog"`, 1))},
		{name: "no audience", raw: signRaw(t, key.Private, hdr(TypeUser), strings.Replace(userPayload(""), `"aud":"backstage",`, ``, 1))},
		{name: "no sub", raw: signRaw(t, key.Private, hdr(TypeUser), strings.Replace(userPayload(""), `"sub":"user:default/alice",`, ``, 1))},
		{name: "no iat", raw: signRaw(t, key.Private, hdr(TypeUser), strings.Replace(userPayload(""), fmt.Sprintf(`"iat":%d,`, now), ``, 1))},
		{name: "string exp", raw: signRaw(t, key.Private, hdr(TypeUser), strings.Replace(userPayload(""), fmt.Sprintf(`"exp":%d`, now+3600), `"exp":"soon"`, 1))},
		{name: "issued in the future", raw: signRaw(t, key.Private, hdr(TypeUser), strings.Replace(userPayload(""), fmt.Sprintf(`"iat":%d`, now), fmt.Sprintf(`"iat":%d`, now+600), 1))},
		{name: "expired now", raw: signRaw(t, key.Private, hdr(TypeUser), strings.Replace(userPayload(""), fmt.Sprintf(`"exp":%d`, now+3600), fmt.Sprintf(`"exp":%d`, now), 1)), expired: true},
		{name: "limited without sub", raw: signRaw(t, key.Private, hdr(TypeLimitedUser), fmt.Sprintf(`{"iat":%d,"exp":%d}`, now, now+60))},
		{name: "payload not an object", raw: signRaw(t, key.Private, hdr(TypeUser), `["a"]`)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.iss.Verify(ctx, tc.raw)
			want := ErrInvalidToken
			if tc.expired {
				want = ErrExpiredToken
			}
			if !errorsIs(err, want) {
				t.Fatalf("err = %v, want %v", err, want)
			}
		})
	}

	// A well-formed token we sign by hand passes, so the cases above fail
	// for the reason they name.
	if _, err := f.iss.Verify(ctx, signRaw(t, key.Private, hdr(TypeUser), userPayload(`,"aud2":1`))); err != nil {
		t.Fatalf("control token: %v", err)
	}
	if _, err := f.iss.Verify(ctx, signRaw(t, key.Private, hdr(TypeUser), strings.Replace(userPayload(""), `"aud":"backstage"`, `"aud":["x","backstage"]`, 1))); err != nil {
		t.Fatalf("audience array: %v", err)
	}

	// Expiry of real tokens, with the clock.
	f.clock.Advance(time.Hour - time.Second)
	if _, err := f.iss.Verify(ctx, tok.Raw); err != nil {
		t.Fatalf("one second before exp: %v", err)
	}
	f.clock.Advance(time.Second)
	for _, raw := range []string{tok.Raw, limited} {
		if _, err := f.iss.Verify(ctx, raw); !errorsIs(err, ErrExpiredToken) {
			t.Fatalf("at exp: err = %v, want ErrExpiredToken", err)
		}
	}
}

// Replicas sharing a key store: a token one replica signed verifies on
// another that loaded its keys earlier.
func TestReloadPicksUpOtherReplicasKeys(t *testing.T) {
	shared := NewMemoryKeyStore()
	a := newFixture(t, shared)
	b := newFixture(t, shared)
	b.clock = a.clock
	b.iss.now = a.clock.Now
	a.clock.Advance(time.Minute)
	tok := a.issue(t, Claims{Subject: "user:default/alice"})
	if _, err := b.iss.Verify(context.Background(), tok.Raw); err != nil {
		t.Fatalf("replica B: %v", err)
	}
	if !bytes.Equal(a.iss.JWKS(), b.iss.JWKS()) {
		t.Error("replicas publish different JWKS")
	}
	// Unknown kids do not hammer the store.
	counting := &countingKeyStore{KeyStore: shared}
	c, err := New(Config{Issuer: testIssuer, KeyStore: counting, Now: a.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	forged := func(payload string) string {
		return signRaw(t, a.currentKey(t).Private, `{"typ":"vnd.backstage.user","alg":"ES256","kid":"00000000-0000-4000-8000-000000000000"}`, payload)
	}
	iat := func(at time.Time) string { return fmt.Sprintf(`{"iat":%d}`, at.Unix()) }
	a.clock.Advance(time.Second)
	for _, tc := range []struct {
		name    string
		raw     string
		reloads int
	}{
		// No plausible iat: refused without reading the store.
		{"no iat", forged(`{}`), 0},
		{"iat not a date", forged(`{"iat":"soon"}`), 0},
		// Issued well before the last read (New): that read saw its key.
		{"iat before the last read", forged(iat(a.clock.Now().Add(-time.Minute))), 0},
		// Issued now: one read, then the next ones are covered by it.
		{"iat now", forged(iat(a.clock.Now())), 1},
	} {
		before := counting.calls()
		for range 50 {
			if _, err := c.Verify(context.Background(), tc.raw); !errorsIs(err, ErrInvalidToken) {
				t.Fatalf("%s: err = %v, want ErrInvalidToken", tc.name, err)
			}
		}
		if n := counting.calls() - before; n != tc.reloads {
			t.Errorf("%s: 50 verifications read the store %d times, want %d", tc.name, n, tc.reloads)
		}
	}
}

// A replica that loaded its keys just before another one made its first key
// verifies that key's tokens at once, and publishes it in FreshJWKS.
func TestNewKeyOfAnotherReplicaIsKnownAtOnce(t *testing.T) {
	shared := NewMemoryKeyStore()
	a := newFixture(t, shared)
	b, err := New(Config{Issuer: testIssuer, KeyStore: shared, SharedKeyStore: true, Now: a.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if got := jwksKeys(t, b.JWKS()); len(got) != 0 {
		t.Fatalf("B's JWKS before any key exists: %v", got)
	}
	a.clock.Advance(time.Second)
	tok := a.issue(t, Claims{Subject: "user:default/alice"}) // A makes the first key now
	if got := jwksKeys(t, b.FreshJWKS(context.Background())); len(got) != 1 {
		t.Errorf("B's fresh JWKS after A's first key: %d keys, want 1", len(got))
	}
	if _, err := b.Verify(context.Background(), tok.Raw); err != nil {
		t.Errorf("B verifying A's token: %v", err)
	}
}

type countingKeyStore struct {
	KeyStore
	mu sync.Mutex
	n  int
}

func (c *countingKeyStore) ListKeys(ctx context.Context) ([]Key, error) {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
	return c.KeyStore.ListKeys(ctx)
}

func (c *countingKeyStore) calls() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

func TestConcurrentIssueVerifyRotate(t *testing.T) {
	ks, err := OpenFileKeyStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, ks)
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				tok, err := f.iss.Issue(ctx, Claims{Subject: fmt.Sprintf("user:default/u%d", g)})
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := f.iss.Verify(ctx, tok.Raw); err != nil && !errorsIs(err, ErrExpiredToken) {
					t.Error(err)
					return
				}
				_ = f.iss.JWKS()
				if g == 0 && i%10 == 0 {
					f.clock.Advance(20 * time.Minute)
				}
			}
		}()
	}
	wg.Wait()
	keys, _ := ks.ListKeys(ctx)
	if len(keys) == 0 || len(keys) > 4 {
		t.Errorf("%d keys stored after 100 minutes of rotations", len(keys))
	}
}

func TestIssueStoresUserInfo(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	f.issue(t, Claims{Subject: "user:default/alice", Ent: []string{"user:default/alice", "group:default/team-a"}})
	info, err := f.info.Get(ctx, "user:default/alice")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(info)
	if want := `{"claims":{"sub":"user:default/alice","ent":["user:default/alice","group:default/team-a"]}}`; string(body) != want {
		t.Errorf("user info = %s, want %s", body, want)
	}
	f.issue(t, Claims{Subject: "user:default/bob"})
	info, _ = f.info.Get(ctx, "user:default/bob")
	if body, _ := json.Marshal(info); string(body) != `{"claims":{"sub":"user:default/bob","ent":["user:default/bob"]}}` {
		t.Errorf("default ent user info = %s", body)
	}
	if _, err := f.info.Get(ctx, "user:default/nobody"); !errorsIs(err, ErrUserInfoNotFound) {
		t.Errorf("unknown user: %v", err)
	}
}

func TestTokenStringRedacts(t *testing.T) {
	f := newFixture(t, nil)
	tok := f.issue(t, Claims{Subject: "user:default/alice"})
	for _, s := range []string{fmt.Sprint(tok), fmt.Sprintf("%+v", tok), fmt.Sprintf("%#v", tok)} {
		if strings.Contains(s, tok.Raw[:20]) {
			t.Errorf("formatted token reveals it: %s", s)
		}
	}
}

func BenchmarkIssue(b *testing.B) {
	f := newFixture(b, nil)
	ctx := context.Background()
	c := Claims{Subject: "user:default/alice", Ent: []string{"user:default/alice", "group:default/team-a"}}
	f.issue(b, c)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.iss.Issue(ctx, c); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkIssueParallel(b *testing.B) {
	f := newFixture(b, nil)
	ctx := context.Background()
	c := Claims{Subject: "user:default/alice", Ent: []string{"user:default/alice", "group:default/team-a"}}
	f.issue(b, c)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := f.iss.Issue(ctx, c); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkVerify(b *testing.B) {
	f := newFixture(b, nil)
	ctx := context.Background()
	tok := f.issue(b, Claims{Subject: "user:default/alice"})
	for _, tc := range []struct{ name, raw string }{{"user", tok.Raw}, {"limited", rebuildLimited(b, tok.Raw)}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := f.iss.Verify(ctx, tc.raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkJWKS(b *testing.B) {
	f := newFixture(b, nil)
	f.issue(b, Claims{Subject: "user:default/alice"})
	b.ReportAllocs()
	for b.Loop() {
		if len(f.iss.JWKS()) == 0 {
			b.Fatal("empty")
		}
	}
}

// Verify reads claims by their exact names, as Backstage's verifiers
// (JSON.parse) do: a claim spelt in another case is another claim, never
// the subject, expiry or session of the token.
func TestVerifyReadsClaimNamesExactly(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	now := f.clock.Now().Unix()
	sid := strings.Repeat("ab", 32)
	tok := f.issue(t, Claims{Subject: "user:default/alice", Extra: map[string]any{
		"sid": sid, "Sub": "user:default/admin", "SID": strings.Repeat("cd", 32), "Exp": now + 10*86400, "ISS": "x",
	}})
	v, err := f.iss.Verify(ctx, tok.Raw)
	if err != nil {
		t.Fatal(err)
	}
	if v.Subject != "user:default/alice" || v.SessionID != sid || v.ExpiresAt.Unix() != now+3600 {
		t.Fatalf("Verify read sub %q sid %q exp %d; want alice, %s, %d", v.Subject, v.SessionID, v.ExpiresAt.Unix(), sid, now+3600)
	}

	// An expired token does not come back to life through "EXP".
	key := f.currentKey(t)
	hdr := fmt.Sprintf(`{"typ":%q,"alg":"ES256","kid":%q}`, TypeUser, key.ID)
	raw := signRaw(t, key.Private, hdr, fmt.Sprintf(`{"iss":%q,"sub":"user:default/alice","aud":"backstage","iat":%d,"exp":%d,"EXP":%d}`, testIssuer, now-7200, now-3600, now+3600))
	if _, err := f.iss.Verify(ctx, raw); !errorsIs(err, ErrExpiredToken) {
		t.Fatalf("expired token with EXP: err = %v, want ErrExpiredToken", err)
	}
}

// Replicas on a shared store rotate at the same moment; they sign with the
// key the first of them made instead of adding one each.
func TestReplicasRotateToOneKey(t *testing.T) {
	for _, shared := range []bool{true, false} {
		store := NewMemoryKeyStore()
		clock := newClock()
		replicas := make([]*Issuer, 3)
		for i := range replicas {
			iss, err := New(Config{Issuer: testIssuer, Lifetime: time.Hour, KeyStore: store, SharedKeyStore: shared, Now: clock.Now})
			if err != nil {
				t.Fatal(err)
			}
			replicas[i] = iss
		}
		var tokens []Token
		for round := range 2 {
			clock.Advance(time.Hour) // every replica's signing key is due
			for _, iss := range replicas {
				tok, err := iss.Issue(context.Background(), Claims{Subject: "user:default/alice"})
				if err != nil {
					t.Fatalf("round %d: %v", round, err)
				}
				tokens = append(tokens, tok)
			}
		}
		keys, err := store.ListKeys(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		want := 6 // each replica makes its own key each round
		if shared {
			want = 2 // one per round
		}
		if len(keys) != want {
			t.Errorf("shared=%v: %d keys after two rotations of three replicas, want %d", shared, len(keys), want)
		}
		for _, iss := range replicas {
			for _, tok := range tokens[len(tokens)-3:] {
				if _, err := iss.Verify(context.Background(), tok.Raw); err != nil {
					t.Errorf("shared=%v: a replica refuses a token of the last round: %v", shared, err)
				}
			}
		}
	}
}
