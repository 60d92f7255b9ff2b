package oidccluster_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/spectroauth/spectroauth/plugins/oidc-cluster/oidccluster"
	"github.com/spectroauth/spectroauth/sdk"
	"github.com/spectroauth/spectroauth/sdk/plugintest"
)

const issuer = "https://console.spectrocloud.example/v1/oidc/tenant/t1"

var rsaKey, _ = rsa.GenerateKey(rand.Reader, 2048)

func sign(t testing.TB, alg jose.SignatureAlgorithm, key any, claims map[string]any) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, nil)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func claims(mod func(map[string]any)) map[string]any {
	c := map[string]any{
		"iss": issuer, "sub": "alice-sub", "aud": []string{"k8s-prod", "spectroauth"},
		"email": "alice@example.com", "email_verified": true, "groups": []string{"dev", "ops"},
		"iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix(),
	}
	if mod != nil {
		mod(c)
	}
	return c
}

func request(token string, opts sdk.Options) sdk.CredentialRequest {
	return sdk.CredentialRequest{
		Strategy: oidccluster.StrategyName,
		Options:  opts,
		Cluster:  sdk.Cluster{Name: "prod", Server: "https://prod.example.com:6443"},
		Session: sdk.Session{
			UserEntityRef: "user:default/alice", Subject: "alice-sub", IDToken: token,
			IDTokenExpiresAt: time.Now().Add(time.Hour), PaletteSessionToken: "palette.session.token",
		},
	}
}

func TestConformance(t *testing.T) {
	good := sign(t, jose.RS256, rsaKey, claims(nil))
	plugintest.Run(t, oidccluster.Plugin(), plugintest.Suite{
		BadOptions: []plugintest.BadOptions{
			{Key: "clientId", Request: sdk.ValidateOptionsRequest{Role: sdk.CapabilityClusterStrategy, Name: "oidc", Options: sdk.Options{"clientId": 7}}},
			{Key: "issuer", Request: sdk.ValidateOptionsRequest{Role: sdk.CapabilityClusterStrategy, Name: "oidc", Options: sdk.Options{"issuer": "http://insecure.example.com"}}},
			{Key: "minValidity", Request: sdk.ValidateOptionsRequest{Role: sdk.CapabilityClusterStrategy, Name: "oidc", Options: sdk.Options{"minValidity": "soon"}}},
			{Key: "clientID", Request: sdk.ValidateOptionsRequest{Role: sdk.CapabilityClusterStrategy, Name: "oidc", Options: sdk.Options{"clientID": "typo"}}},
		},
		Credential: []plugintest.CredentialCase{
			{Name: "hands the ID token", Request: request(good, sdk.Options{"clientId": "k8s-prod", "issuer": issuer}),
				Check: func(t plugintest.T, got sdk.Credential) {
					if got.Token != good {
						t.Errorf("token is not the ID token")
					}
					if d := time.Until(got.ExpiresAt); d < 59*time.Minute || d > time.Hour {
						t.Errorf("ExpiresAt = %v, want the token's exp", got.ExpiresAt)
					}
				}},
		},
	})
}

func TestRefusals(t *testing.T) {
	now := time.Now()
	s := &oidccluster.Strategy{Now: func() time.Time { return now }}
	hsKey := []byte(strings.Repeat("k", 32))
	opts := sdk.Options{"clientId": "k8s-prod"}
	for _, tc := range []struct {
		name  string
		token string
		opts  sdk.Options
		ann   map[string]string
		want  string
	}{
		{"no token", "", opts, nil, "sign in again"},
		{"palette session token", "palette.session.token", opts, nil, "Palette session token"},
		{"HS256 token", sign(t, jose.HS256, hsKey, claims(nil)), opts, nil, `signed with "HS256"`},
		{"not a JWT", "abc.def", opts, nil, "not a JWT"},
		{"garbage payload", "eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2ln", opts, nil, "not a JSON object"},
		{"wrong audience", sign(t, jose.RS256, rsaKey, claims(func(c map[string]any) { c["aud"] = "backstage" })), opts, nil, `client id "k8s-prod"`},
		{"audience from annotation", sign(t, jose.RS256, rsaKey, claims(nil)), nil, map[string]string{oidccluster.AnnotationClientID: "other"}, `client id "other"`},
		{"expired", sign(t, jose.RS256, rsaKey, claims(func(c map[string]any) { c["exp"] = now.Add(-time.Minute).Unix() })), opts, nil, "expired"},
		{"about to expire", sign(t, jose.RS256, rsaKey, claims(func(c map[string]any) { c["exp"] = now.Add(10 * time.Second).Unix() })), opts, nil, "less than the 30s"},
		{"no exp", sign(t, jose.RS256, rsaKey, claims(func(c map[string]any) { delete(c, "exp") })), opts, nil, "no exp"},
		{"http issuer", sign(t, jose.RS256, rsaKey, claims(func(c map[string]any) { c["iss"] = "http://palette.example.com" })), opts, nil, "not an https URL"},
		{"other issuer", sign(t, jose.RS256, rsaKey, claims(nil)), sdk.Options{"clientId": "k8s-prod", "issuer": "https://sts.example.com"}, nil, "trusts \"https://sts.example.com\""},
		{"other issuer by annotation", sign(t, jose.RS256, rsaKey, claims(nil)), opts, map[string]string{oidccluster.AnnotationIssuer: "https://sts.example.com"}, "trusts"},
		{"email not verified", sign(t, jose.RS256, rsaKey, claims(func(c map[string]any) { c["email_verified"] = false })), opts, nil, "not verified"},
		{"no email", sign(t, jose.RS256, rsaKey, claims(func(c map[string]any) { delete(c, "email") })), opts, nil, `no string "email" claim`},
		{"no custom username claim", sign(t, jose.RS256, rsaKey, claims(nil)), sdk.Options{"clientId": "k8s-prod", "usernameClaim": "preferred_username"}, nil, "preferred_username"},
		{"not yet valid", sign(t, jose.RS256, rsaKey, claims(func(c map[string]any) { c["nbf"] = now.Add(time.Hour).Unix() })), opts, nil, "not valid before"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := request(tc.token, tc.opts)
			req.Cluster.Annotations = tc.ann
			_, err := s.Credential(context.Background(), req)
			var ie *sdk.InvalidInputError
			if !errors.As(err, &ie) || ie.Field != "Session.IDToken" || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an InvalidInputError on Session.IDToken saying %q", err, tc.want)
			}
			if tc.token != "" && strings.Contains(err.Error(), tc.token) {
				t.Errorf("the error quotes the token")
			}
		})
	}

	// Absent email_verified is accepted, as kube-apiserver does; options
	// from annotations work.
	tok := sign(t, jose.RS256, rsaKey, claims(func(c map[string]any) { delete(c, "email_verified") }))
	req := request(tok, nil)
	req.Cluster.Annotations = map[string]string{oidccluster.AnnotationClientID: "spectroauth", oidccluster.AnnotationIssuer: issuer}
	if cred, err := s.Credential(context.Background(), req); err != nil || cred.Token != tok {
		t.Errorf("annotated cluster: %v", err)
	}
	var ce *sdk.ConfigError
	if _, err := s.Credential(context.Background(), request(tok, nil)); !errors.As(err, &ce) || ce.Key != "clientId" {
		t.Errorf("no client id anywhere: %v, want a ConfigError on clientId", err)
	}
}
