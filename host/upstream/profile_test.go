package upstream

import (
	"encoding/json"
	"testing"
)

func TestProfileFromClaims(t *testing.T) {
	for _, tc := range []struct {
		name   string
		claims string
		trust  bool
		want   Profile
	}{
		{
			name:   "verified email, full profile",
			claims: `{"sub":"s1","iss":"https://i","email":"a@x.io","email_verified":true,"name":"Ann Lee","given_name":"Ann","family_name":"Lee","picture":"https://x.io/a.png","preferred_username":"ann","groups":["dev","ops"]}`,
			want:   Profile{Email: "a@x.io", EmailVerified: true, DisplayName: "Ann Lee", Picture: "https://x.io/a.png", Subject: "s1", Issuer: "https://i", PreferredUsername: "ann", Groups: []string{"dev", "ops"}},
		},
		{
			name:   "email_verified false is never trusted",
			claims: `{"sub":"s1","email":"a@x.io","email_verified":false}`,
			trust:  true,
			want:   Profile{Subject: "s1"},
		},
		{
			name:   "email_verified as string is not the boolean true",
			claims: `{"sub":"s1","email":"a@x.io","email_verified":"true"}`,
			trust:  true,
			want:   Profile{Subject: "s1"},
		},
		{
			name:   "email_verified absent, untrusted",
			claims: `{"sub":"s1","email":"a@x.io"}`,
			want:   Profile{Subject: "s1"},
		},
		{
			name:   "email_verified absent, trusted (Palette)",
			claims: `{"sub":"s1","email":"a@x.io","given_name":"Ann","family_name":"Lee","groups":["g"]}`,
			trust:  true,
			want:   Profile{Subject: "s1", Email: "a@x.io", DisplayName: "Ann Lee", Groups: []string{"g"}},
		},
		{
			name:   "display name from given name only",
			claims: `{"sub":"s1","given_name":"Ann"}`,
			want:   Profile{Subject: "s1", DisplayName: "Ann"},
		},
		{
			name:   "display name from family name only",
			claims: `{"sub":"s1","family_name":"Lee"}`,
			want:   Profile{Subject: "s1", DisplayName: "Lee"},
		},
		{
			name:   "display name falls back to the verified email",
			claims: `{"sub":"s1","email":"a@x.io","email_verified":true,"name":"  "}`,
			want:   Profile{Subject: "s1", Email: "a@x.io", EmailVerified: true, DisplayName: "a@x.io"},
		},
		{
			name:   "no display name from an unverified email",
			claims: `{"sub":"s1","email":"a@x.io","email_verified":false}`,
			want:   Profile{Subject: "s1"},
		},
		{
			name:   "groups as a single string",
			claims: `{"sub":"s1","groups":"admins"}`,
			want:   Profile{Subject: "s1", Groups: []string{"admins"}},
		},
		{
			name:   "groups with non-strings and blanks",
			claims: `{"sub":"s1","groups":["a",1,"",null,"b",{"x":1}]}`,
			want:   Profile{Subject: "s1", Groups: []string{"a", "b"}},
		},
		{
			name:   "groups of the wrong type",
			claims: `{"sub":"s1","groups":{"a":true}}`,
			want:   Profile{Subject: "s1"},
		},
		{
			name:   "picture must be http(s)",
			claims: `{"sub":"s1","picture":"javascript:alert(1)"}`,
			want:   Profile{Subject: "s1"},
		},
		{
			name:   "wrongly typed claims ignored",
			claims: `{"sub":42,"email":["a@x.io"],"email_verified":true,"name":7}`,
			want:   Profile{},
		},
		{
			name:   "empty",
			claims: `{}`,
			want:   Profile{},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var claims map[string]any
			if err := json.Unmarshal([]byte(tc.claims), &claims); err != nil {
				t.Fatal(err)
			}
			got := ProfileFromClaims(claims, tc.trust)
			if !profilesEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
	// []string (claims built in Go, not decoded) works too.
	if g := ProfileFromClaims(map[string]any{"groups": []string{"x", " "}}, false).Groups; len(g) != 1 || g[0] != "x" {
		t.Errorf("[]string groups = %v", g)
	}
}

func TestIsPaletteSessionToken(t *testing.T) {
	for _, tc := range []struct {
		tok  string
		want bool
	}{
		{"", false},
		{"opaque-refresh-token", false},
		{"a.b", false},
		{unsignedJWT(map[string]any{"alg": "HS256", "typ": "JWT"}, map[string]any{"sub": "x"}, []byte("sig")), true},
		{unsignedJWT(map[string]any{"alg": "HS512"}, map[string]any{"sub": "x"}, []byte("sig")), false},
		{unsignedJWT(map[string]any{"alg": "RS256"}, map[string]any{"sub": "x"}, []byte("sig")), false},
		{unsignedJWT(map[string]any{"alg": "HS256"}, map[string]any{"typ": "Refresh"}, []byte("sig")), false},
		{unsignedJWT(map[string]any{"alg": "HS256"}, map[string]any{"typ": "Offline"}, []byte("sig")), false},
		{"eyJ!!!.x.y", false},
	} {
		if got := isPaletteSessionToken(tc.tok); got != tc.want {
			t.Errorf("isPaletteSessionToken(%.40q) = %v, want %v", tc.tok, got, tc.want)
		}
	}
}
