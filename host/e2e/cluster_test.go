package e2e

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"k8s.io/apiserver/pkg/apis/apiserver"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	kubeoidc "k8s.io/apiserver/plugin/pkg/authenticator/token/oidc"
)

// The company security token service (RFC 8693) a token-exchange cluster
// trusts as its OpenID issuer: the daemon's token-exchange plugin sends it
// the user's SpectroCloud ID token and gets a token for the cluster.
const (
	stsClientID     = "spectroauth"
	stsClientSecret = "sts-e2e-secret"
	stsAudience     = "staging-k8s"
	tokenExchange   = "urn:ietf:params:oauth:grant-type:token-exchange"
	idTokenType     = "urn:ietf:params:oauth:token-type:id_token"
	accessTokenType = "urn:ietf:params:oauth:token-type:access_token"
)

// sts is a security token service written from RFC 8693 and OpenID
// Connect Discovery: it verifies the subject token (the ID token of the
// test OpenID provider, with go-oidc) and issues ES256 JWTs for the
// requested audience (RS256, what kube-apiserver verifies by default),
// published at its JWKS for the cluster to verify.
type sts struct {
	srv *httptest.Server
	key *rsa.PrivateKey
	kid string

	mu        sync.Mutex
	verifier  *oidc.IDTokenVerifier // set by trust
	exchanges int
}

// newSTS starts the STS; it exchanges nothing until told whom to trust.
func newSTS(t *testing.T) *sts {
	t.Helper()
	s := &sts{key: rsaKey(t), kid: "sts-1"}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		writeJSONResponse(w, http.StatusOK, map[string]any{
			"issuer":                                s.srv.URL,
			"jwks_uri":                              s.srv.URL + "/jwks",
			"token_endpoint":                        s.srv.URL + "/token",
			"response_types_supported":              []string{"id_token"},
			"subject_types_supported":               []string{"public"},
			"id_token_signing_alg_values_supported": []string{"RS256"},
			"grant_types_supported":                 []string{tokenExchange},
		})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, _ *http.Request) {
		writeJSONResponse(w, http.StatusOK, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
			{Key: &s.key.PublicKey, KeyID: s.kid, Algorithm: string(jose.RS256), Use: "sig"},
		}})
	})
	mux.HandleFunc("POST /token", s.exchange)
	s.srv = httptest.NewTLSServer(mux)
	t.Cleanup(s.srv.Close)
	return s
}

// trust makes the STS accept the ID tokens issuer issues to clientID as
// subject tokens.
func (s *sts) trust(t *testing.T, issuer, clientID string) {
	t.Helper()
	prov, err := oidc.NewProvider(context.Background(), issuer)
	if err != nil {
		t.Fatalf("the STS cannot discover %s: %v", issuer, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.verifier = prov.Verifier(&oidc.Config{ClientID: clientID})
}

func (s *sts) caPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.srv.Certificate().Raw})
}

func oauthError(w http.ResponseWriter, status int, code, desc string) {
	writeJSONResponse(w, status, map[string]string{"error": code, "error_description": desc})
}

func writeJSONResponse(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// exchange is the token endpoint: client_secret_basic, the token-exchange
// grant of an ID token, one audience.
func (s *sts) exchange(w http.ResponseWriter, r *http.Request) {
	if id, secret, ok := r.BasicAuth(); !ok || id != stsClientID || secret != stsClientSecret {
		oauthError(w, http.StatusUnauthorized, "invalid_client", "client authentication failed")
		return
	}
	if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != tokenExchange {
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "want token exchange")
		return
	}
	if r.PostForm.Get("subject_token_type") != idTokenType {
		oauthError(w, http.StatusBadRequest, "invalid_request", "want an ID token as subject token")
		return
	}
	s.mu.Lock()
	verifier := s.verifier
	s.mu.Unlock()
	if verifier == nil {
		oauthError(w, http.StatusBadRequest, "invalid_grant", "this STS trusts no issuer yet")
		return
	}
	idt, err := verifier.Verify(r.Context(), r.PostForm.Get("subject_token"))
	if err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_grant", "subject token: "+err.Error())
		return
	}
	if aud := r.PostForm.Get("audience"); aud != stsAudience {
		oauthError(w, http.StatusBadRequest, "invalid_target", "unknown audience")
		return
	}
	now := time.Now()
	tok, err := s.sign(map[string]any{
		"iss": s.srv.URL, "sub": idt.Subject, "aud": stsAudience,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(),
	})
	if err != nil {
		oauthError(w, http.StatusInternalServerError, "server_error", err.Error())
		return
	}
	s.mu.Lock()
	s.exchanges++
	s.mu.Unlock()
	writeJSONResponse(w, http.StatusOK, map[string]any{
		"access_token": tok, "issued_token_type": accessTokenType, "token_type": "Bearer", "expires_in": 600,
	})
}

func (s *sts) sign(claims map[string]any) (string, error) {
	return signJWT(jose.RS256, s.key, s.kid, "JWT", claims)
}

func (s *sts) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.exchanges
}

func rsaKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// signJWT is a compact JWS of claims with this algorithm, key, key id and type.
func signJWT(alg jose.SignatureAlgorithm, key any, kid, typ string, claims map[string]any) (string, error) {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType(jose.ContentType(typ)))
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
}

// clusterAuthenticator is kube-apiserver's own JWT authenticator
// configured as the token-exchange cluster is: the STS as issuer, the
// cluster's audience, the user name from sub without a prefix.
func clusterAuthenticator(t *testing.T, issuer string, caPEM []byte) authenticator.Token {
	t.Helper()
	noPrefix := ""
	jwt := apiserver.JWTAuthenticator{
		Issuer:        apiserver.Issuer{URL: issuer, Audiences: []string{stsAudience}, CertificateAuthority: string(caPEM)},
		ClaimMappings: apiserver.ClaimMappings{Username: apiserver.PrefixedClaimOrExpression{Claim: "sub", Prefix: &noPrefix}},
	}
	ca, err := dynamiccertificates.NewStaticCAContent("sts", caPEM)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	a, err := kubeoidc.New(ctx, kubeoidc.Options{JWTAuthenticator: jwt, CAContentProvider: ca})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for a.HealthCheck() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("the cluster's authenticator did not initialise: %v", a.HealthCheck())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return a
}

// cluster is the test Kubernetes API server (TLS): every request is
// authenticated with kube-apiserver's authenticator; SelfSubjectReview
// answers who the caller is; the pod list holds one pod, annotated with
// whom the cluster authenticated, every other list (GET) is empty. It
// records each request's outcome.
type cluster struct {
	srv  *httptest.Server
	auth authenticator.Token

	mu   sync.Mutex
	seen []clusterRequest
}

type clusterRequest struct {
	Method, Path, User string
	Authenticated      bool
	Error              string
}

func newCluster(t *testing.T, auth authenticator.Token) *cluster {
	t.Helper()
	c := &cluster{auth: auth}
	c.srv = httptest.NewTLSServer(http.HandlerFunc(c.serve))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *cluster) caPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.srv.Certificate().Raw})
}

func (c *cluster) requests() []clusterRequest {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.seen)
}

func kubeStatus(w http.ResponseWriter, code int, reason, msg string) {
	writeJSONResponse(w, code, map[string]any{
		"kind": "Status", "apiVersion": "v1", "metadata": map[string]any{},
		"status": "Failure", "message": msg, "reason": reason, "code": code,
	})
}

func (c *cluster) serve(w http.ResponseWriter, r *http.Request) {
	rec := clusterRequest{Method: r.Method, Path: r.URL.Path}
	defer func() {
		c.mu.Lock()
		c.seen = append(c.seen, rec)
		c.mu.Unlock()
	}()
	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") || token == "" {
		rec.Error = "no bearer token"
		kubeStatus(w, http.StatusUnauthorized, "Unauthorized", "Unauthorized")
		return
	}
	res, ok, err := c.auth.AuthenticateToken(r.Context(), token)
	if err != nil || !ok {
		rec.Error = "not a token of the cluster's issuer"
		if err != nil {
			rec.Error = err.Error()
		}
		kubeStatus(w, http.StatusUnauthorized, "Unauthorized", "Unauthorized")
		return
	}
	rec.Authenticated, rec.User = true, res.User.GetName()
	if r.Method == http.MethodGet {
		items := []any{}
		if r.URL.Path == "/api/v1/pods" {
			items = append(items, map[string]any{"apiVersion": "v1", "kind": "Pod", "metadata": map[string]any{
				"name": "e2e", "namespace": "default", "labels": map[string]any{"backstage.io/kubernetes-id": "e2e"},
				"annotations": map[string]any{"e2e/authenticated-as": res.User.GetName()},
			}})
		}
		writeJSONResponse(w, http.StatusOK, map[string]any{"kind": "List", "apiVersion": "v1", "metadata": map[string]any{}, "items": items})
		return
	}
	if r.Method != http.MethodPost || r.URL.Path != "/apis/authentication.k8s.io/v1/selfsubjectreviews" {
		kubeStatus(w, http.StatusNotFound, "NotFound", "the server could not find the requested resource")
		return
	}
	writeJSONResponse(w, http.StatusCreated, map[string]any{
		"kind": "SelfSubjectReview", "apiVersion": "authentication.k8s.io/v1",
		"metadata": map[string]any{"creationTimestamp": nil},
		"status": map[string]any{"userInfo": map[string]any{
			"username": res.User.GetName(),
			"groups":   append(slices.Clone(res.User.GetGroups()), "system:authenticated"),
		}},
	})
}
