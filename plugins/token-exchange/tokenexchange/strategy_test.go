package tokenexchange_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spectroauth/spectroauth/plugins/token-exchange/tokenexchange"
	"github.com/spectroauth/spectroauth/sdk"
	"github.com/spectroauth/spectroauth/sdk/plugintest"
)

const (
	clientID     = "spectroauth"
	clientSecret = "sts-secret"
	paletteToken = "palette-session-token"
)

// jwt makes an unsigned-looking JWT with the given claims (the STS in this
// test does not verify signatures; the shape is what matters).
func jwt(claims map[string]any) string {
	b, _ := json.Marshal(claims)
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256","typ":"JWT"}`)) + "." + enc(b) + ".c2lnbmF0dXJl"
}

// sts is a security token service written from RFC 8693.
type sts struct {
	srv  *httptest.Server
	mu   sync.Mutex
	seen []*http.Request
	form []map[string][]string
}

func newSTS(t *testing.T) *sts {
	s := &sts{}
	s.srv = httptest.NewTLSServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *sts) caPEM() string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.srv.Certificate().Raw}))
}

func oauthError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}

func (s *sts) serve(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || r.URL.Path != "/token" || r.Method != http.MethodPost {
		oauthError(w, 400, "invalid_request", "bad request")
		return
	}
	s.mu.Lock()
	s.seen = append(s.seen, r)
	s.form = append(s.form, r.PostForm)
	s.mu.Unlock()
	id, secret, basic := r.BasicAuth()
	if !basic {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id != clientID || secret != clientSecret {
		oauthError(w, 401, "invalid_client", "client authentication failed")
		return
	}
	if r.PostForm.Get("grant_type") != tokenexchange.GrantType {
		oauthError(w, 400, "unsupported_grant_type", "want token exchange")
		return
	}
	if r.PostForm.Get("subject_token_type") == tokenexchange.TokenTypeAccess {
		// An opaque access token: this STS knows alice's.
		if r.PostForm.Get("subject_token") != "alice-access-token" {
			oauthError(w, 400, "invalid_grant", "subject token rejected")
			return
		}
		r.PostForm.Set("subject_token", jwt(map[string]any{"sub": "alice"}))
	} else if r.PostForm.Get("subject_token_type") != tokenexchange.TokenTypeIDToken {
		oauthError(w, 400, "unsupported_grant_type", "want token exchange of an ID token")
		return
	}
	parts := strings.Split(r.PostForm.Get("subject_token"), ".")
	var subject map[string]any
	if len(parts) == 3 {
		b, _ := base64.RawURLEncoding.DecodeString(parts[1])
		_ = json.Unmarshal(b, &subject)
	}
	if subject["sub"] != "alice" {
		oauthError(w, 400, "invalid_grant", "subject token rejected")
		return
	}
	aud := r.PostForm.Get("audience")
	switch aud {
	case "slow":
		<-r.Context().Done()
		// Hang up without an answer: returning would send an empty 200,
		// which can reach the client before its own deadline fires.
		panic(http.ErrAbortHandler)
	case "denied":
		oauthError(w, 400, "access_denied", "alice may not use this cluster")
		return
	case "boom":
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	case "huge":
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(w, `{"access_token":"%s","token_type":"Bearer"}`, strings.Repeat("x", 2<<20))
		return
	case "redirect":
		http.Redirect(w, r, "https://elsewhere.example.com/token", http.StatusTemporaryRedirect)
		return
	}
	tokenType := "Bearer"
	if aud == "mac" {
		tokenType = "mac"
	}
	res := map[string]any{
		"access_token":      jwt(map[string]any{"iss": s.srv.URL, "sub": "alice", "aud": aud, "exp": time.Now().Add(20 * time.Minute).Unix()}),
		"issued_token_type": tokenexchange.TokenTypeAccess,
		"token_type":        tokenType,
	}
	if aud != "noexpiry" {
		res["expires_in"] = 600
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_ = json.NewEncoder(w).Encode(res)
}

func (s *sts) config() sdk.Options {
	return sdk.Options{"tokenEndpoint": s.srv.URL + "/token", "clientId": clientID, "clientSecret": clientSecret, "caData": s.caPEM()}
}

func request(user, audience string) sdk.CredentialRequest {
	return sdk.CredentialRequest{
		Strategy: tokenexchange.StrategyName,
		Options:  sdk.Options{"audience": audience},
		Cluster:  sdk.Cluster{Name: "corp", Server: "https://corp.example.com:6443"},
		Session: sdk.Session{
			UserEntityRef: "user:default/" + user, Subject: user,
			IDToken:             jwt(map[string]any{"iss": "https://palette.example.com", "sub": user, "aud": "spectroauth", "exp": time.Now().Add(time.Hour).Unix()}),
			IDTokenExpiresAt:    time.Now().Add(time.Hour),
			PaletteSessionToken: paletteToken,
		},
	}
}

func TestConformance(t *testing.T) {
	s := newSTS(t)
	opts := func(o sdk.Options) sdk.ValidateOptionsRequest {
		return sdk.ValidateOptionsRequest{Role: sdk.CapabilityClusterStrategy, Name: tokenexchange.StrategyName, Options: o}
	}
	with := func(k string, v any) sdk.Options {
		c := s.config()
		c[k] = v
		return c
	}
	plugintest.Run(t, tokenexchange.Plugin(), plugintest.Suite{
		Config: s.config(),
		BadConfigs: []plugintest.BadConfig{
			{Config: sdk.Options{}, Key: "tokenEndpoint"},
			{Name: "http endpoint", Config: with("tokenEndpoint", "http://sts.example.com/token"), Key: "tokenEndpoint"},
			{Config: with("clientAuth", "private_key_jwt"), Key: "clientAuth"},
			{Config: with("clientSecret", ""), Key: "clientSecret"},
			{Name: "no CA in caData", Config: with("caData", "not pem"), Key: "caData"},
			{Config: with("timeout", "2h"), Key: "timeout"},
			{Config: with("requestedTokenType", "jwt"), Key: "requestedTokenType"},
			{Name: "unknown key", Config: with("audience", "x"), Key: "audience"},
		},
		BadOptions: []plugintest.BadOptions{
			{Name: "no audience", Request: opts(sdk.Options{}), Key: "audience"},
			{Request: opts(sdk.Options{"audience": "a", "resource": "not a uri"}), Key: "resource"},
			{Request: opts(sdk.Options{"audience": "a", "scopes": "typo"}), Key: "scopes"},
		},
		Credential: []plugintest.CredentialCase{
			{Name: "exchanged", Request: request("alice", "k8s-prod"), Check: func(t plugintest.T, got sdk.Credential) {
				if !strings.Contains(got.Token, ".") || got.Token == request("alice", "k8s-prod").Session.IDToken {
					t.Errorf("the credential is not the STS's token")
				}
				if d := time.Until(got.ExpiresAt); d < 9*time.Minute || d > 10*time.Minute {
					t.Errorf("ExpiresAt = %v, want expires_in from now", got.ExpiresAt)
				}
			}},
			{Name: "STS denies the audience", Request: request("alice", "denied"), Expect: plugintest.ExpectNotFound},
			{Name: "STS hangs", Request: request("alice", "slow"), Expect: plugintest.ExpectBlock},
		},
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, r := range s.seen {
		if _, _, ok := r.BasicAuth(); !ok {
			t.Errorf("request %d: no client_secret_basic authentication", i)
		}
		f := s.form[i]
		if strings.Contains(fmt.Sprint(f), paletteToken) {
			t.Errorf("the Palette session token was sent to the STS")
		}
		if _, ok := f["client_secret"]; ok {
			t.Errorf("the secret was sent in the body with client_secret_basic")
		}
	}
}

func configured(t *testing.T, cfg sdk.Options) *tokenexchange.Strategy {
	t.Helper()
	st := &tokenexchange.Strategy{}
	if err := st.Configure(context.Background(), sdk.Config{Values: cfg}); err != nil {
		t.Fatal(err)
	}
	return st
}

func TestFailures(t *testing.T) {
	s := newSTS(t)
	st := configured(t, s.config())
	wrongSecret := s.config()
	wrongSecret["clientSecret"] = "nope"
	noCA := s.config()
	delete(noCA, "caData")
	for _, tc := range []struct {
		name     string
		st       *tokenexchange.Strategy
		req      sdk.CredentialRequest
		check    func(error) bool
		contains string
	}{
		{"subject refused", st, request("bob", "k8s-prod"), isInvalidInput, "refused your SpectroCloud ID token"},
		{"no ID token", st, func() sdk.CredentialRequest { r := request("alice", "x"); r.Session.IDToken = ""; return r }(), isInvalidInput, "sign in again"},
		{"not a JWT", st, func() sdk.CredentialRequest { r := request("alice", "x"); r.Session.IDToken = "opaque"; return r }(), isInvalidInput, "not a JWT"},
		{"denied", st, request("alice", "denied"), func(err error) bool { return errors.Is(err, sdk.ErrNotFound) }, "alice may not use this cluster"},
		{"wrong client secret", configured(t, wrongSecret), request("alice", "k8s-prod"), configKey("clientSecret"), "refused the client credentials"},
		{"server error", st, request("alice", "boom"), plain, "500"},
		{"huge answer", st, request("alice", "huge"), plain, "larger than"},
		{"redirect not followed", st, request("alice", "redirect"), plain, "307"},
		{"not a bearer token", st, request("alice", "mac"), plain, `type "mac"`},
		{"untrusted certificate", configured(t, noCA), request("alice", "k8s-prod"), plain, "certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.st.Credential(context.Background(), tc.req)
			if err == nil || !tc.check(err) || !strings.Contains(err.Error(), tc.contains) {
				t.Errorf("got %v, want an error saying %q of the right kind", err, tc.contains)
			}
			if strings.Contains(fmt.Sprint(err), "sts-secret") || strings.Contains(fmt.Sprint(err), tc.req.Session.IDToken+"x") {
				t.Errorf("the error leaks a secret")
			}
		})
	}

	// Expiry from the issued JWT when the STS sends no expires_in.
	cred, err := st.Credential(context.Background(), request("alice", "noexpiry"))
	if err != nil || time.Until(cred.ExpiresAt) < 19*time.Minute {
		t.Errorf("noexpiry: %v, %v", cred.ExpiresAt, err)
	}
}

// subjectTokenType decides which token is exchanged: the access token when it
// says access_token, else the ID token; any other type is refused at start.
func TestSubjectTokenType(t *testing.T) {
	s := newSTS(t)
	cfg := s.config()
	cfg["subjectTokenType"] = tokenexchange.TokenTypeAccess
	req := request("alice", "k8s-prod")
	req.Session.AccessToken = "alice-access-token"
	if _, err := configured(t, cfg).Credential(context.Background(), req); err != nil {
		t.Fatalf("exchanging the access token: %v", err)
	}
	s.mu.Lock()
	sent := url.Values(s.form[len(s.form)-1])
	s.mu.Unlock()
	if sent.Get("subject_token_type") != tokenexchange.TokenTypeAccess {
		t.Errorf("subject_token_type = %q", sent.Get("subject_token_type"))
	}
	req.Session.AccessToken = ""
	if _, err := configured(t, cfg).Credential(context.Background(), req); err == nil || !strings.Contains(err.Error(), "access token") {
		t.Errorf("without an access token: %v", err)
	}
	cfg["subjectTokenType"] = "urn:ietf:params:oauth:token-type:refresh_token"
	if err := (&tokenexchange.Strategy{}).Configure(context.Background(), sdk.Config{Values: cfg}); !configKey("subjectTokenType")(err) {
		t.Errorf("a refresh_token subject type was accepted: %v", err)
	}
}

func TestClientSecretPost(t *testing.T) {
	s := newSTS(t)
	cfg := s.config()
	cfg["clientAuth"] = "client_secret_post"
	cfg["requestedTokenType"] = tokenexchange.TokenTypeJWT
	if _, err := configured(t, cfg).Credential(context.Background(), request("alice", "k8s-prod")); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, f := s.seen[0], s.form[0]
	if _, _, basic := r.BasicAuth(); basic || f["client_secret"][0] != clientSecret || f["requested_token_type"][0] != tokenexchange.TokenTypeJWT {
		t.Errorf("client_secret_post request: basic=%v form=%v", basic, f)
	}
}

func isInvalidInput(err error) bool {
	var ie *sdk.InvalidInputError
	return errors.As(err, &ie) && ie.Field == "Session.IDToken"
}

func configKey(key string) func(error) bool {
	return func(err error) bool {
		var ce *sdk.ConfigError
		return errors.As(err, &ce) && ce.Key == key
	}
}

func plain(err error) bool {
	var ie *sdk.InvalidInputError
	var ce *sdk.ConfigError
	return !errors.As(err, &ie) && !errors.As(err, &ce) && !errors.Is(err, sdk.ErrNotFound)
}

func TestConfigStringHidesSecret(t *testing.T) {
	c, err := tokenexchange.ParseConfig(sdk.Options{"tokenEndpoint": "https://sts.example.com/token", "clientId": "a", "clientSecret": "hunter2"})
	if err != nil {
		t.Fatal(err)
	}
	if s := fmt.Sprintf("%v %+v %#v %s", c, c, c, c); strings.Contains(s, "hunter2") {
		t.Errorf("the secret is printed: %s", s)
	}
}
