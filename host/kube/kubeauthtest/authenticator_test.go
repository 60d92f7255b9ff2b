package kubeauthtest_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apiserver/pkg/apis/apiserver"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	"k8s.io/apiserver/plugin/pkg/authenticator/token/oidc"

	"github.com/spectroauth/spectroauth/host/kube"
	"github.com/spectroauth/spectroauth/host/kube/internal/kubetest"
	"github.com/spectroauth/spectroauth/host/kube/kubecli"
	"github.com/spectroauth/spectroauth/plugins/oidc-cluster/oidccluster"
	"github.com/spectroauth/spectroauth/sdk"
	"github.com/spectroauth/spectroauth/sdk/plugintest"
)

// kubeAuthenticator is kube-apiserver's JWT authenticator configured as a
// cluster that trusts SpectroCloud is (oidc.identityProvider: palette):
// issuer URL, the client id as audience, username from email without a
// prefix, groups from groups. It is ready when this returns.
func kubeAuthenticator(t testing.TB, issuer string, caPEM []byte, audience string) authenticator.Token {
	t.Helper()
	noPrefix := ""
	jwt := apiserver.JWTAuthenticator{
		Issuer: apiserver.Issuer{URL: issuer, Audiences: []string{audience}, CertificateAuthority: string(caPEM)},
		ClaimMappings: apiserver.ClaimMappings{
			Username: apiserver.PrefixedClaimOrExpression{Claim: "email", Prefix: &noPrefix},
			Groups:   apiserver.PrefixedClaimOrExpression{Claim: "groups", Prefix: &noPrefix},
		},
	}
	// The library trusts only the CA content provider (kube-apiserver turns
	// Issuer.CertificateAuthority into one itself).
	ca, err := dynamiccertificates.NewStaticCAContent("spectrocloud-oidc", caPEM)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	a, err := oidc.New(ctx, oidc.Options{JWTAuthenticator: jwt, CAContentProvider: ca})
	if err != nil {
		t.Fatal(err)
	}
	// Discovery and JWKS load in the background; the first try is immediate.
	deadline := time.Now().Add(15 * time.Second)
	for a.HealthCheck() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("the kube authenticator did not initialise: %v", a.HealthCheck())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return a
}

// authenticate runs the authenticator; ok false with a nil error means
// "not my issuer".
func authenticate(a authenticator.Token, token string) (*authenticator.Response, bool, error) {
	return a.AuthenticateToken(context.Background(), token)
}

// payload decodes a JWT's claims without checking them.
func payload(t testing.TB, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT")
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// withOIDCCluster starts a daemon whose clusters use the real oidc-cluster
// plugin over gRPC: "prod" trusts the daemon's client id, "other" another
// one. apiServer and apiCA describe prod's API server.
func withOIDCCluster(t *testing.T, apiServer string, apiCA []byte) (*kubetest.Daemon, kube.Strategy) {
	t.Helper()
	plugin := plugintest.Start(t, oidccluster.Plugin())
	d := kubetest.Start(t, kubetest.Options{Clusters: func(d *kubetest.Daemon) []kube.Cluster {
		return []kube.Cluster{
			{Cluster: sdk.Cluster{Name: "prod", Server: apiServer, CAData: apiCA},
				Strategy: &kube.StrategyBinding{Plugin: "oidc-cluster", Strategy: "oidc", Impl: plugin,
					Options: map[string]any{"clientId": d.ClientID, "issuer": d.OP.Issuer()}}},
			{Cluster: sdk.Cluster{Name: "other", Server: "https://other.k8s.example.com:6443"},
				Strategy: &kube.StrategyBinding{Plugin: "oidc-cluster", Strategy: "oidc", Impl: plugin,
					Options: map[string]any{"clientId": "other-cluster"}}},
		}
	}})
	return d, plugin
}

func TestKubeAPIServerAcceptsOurTokens(t *testing.T) {
	d, plugin := withOIDCCluster(t, "https://prod.k8s.example.com:6443", nil)
	ctx := context.Background()

	// Sign in from the command line and get prod's credential through the
	// daemon's route, the plugin, and the audit log.
	cli := &kubecli.Client{Server: d.URL, CacheDir: t.TempDir(), Interactive: true, OpenBrowser: d.OpenBrowser, LoginTimeout: 30 * time.Second}
	if _, err := cli.Login(ctx); err != nil {
		t.Fatal(err)
	}
	cred, err := cli.Credential(ctx, "prod")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(d.Audit.String(), `"outcome":"granted"`) || strings.Contains(d.Audit.String(), cred.Token) {
		t.Errorf("audit log: %s", d.Audit.String())
	}

	kubeAuth := kubeAuthenticator(t, d.OP.Issuer(), d.OPCAPEM, d.ClientID)
	res, ok, err := authenticate(kubeAuth, cred.Token)
	if err != nil || !ok {
		t.Fatalf("kube-apiserver's authenticator refused our credential: ok=%v err=%v", ok, err)
	}
	if name := res.User.GetName(); name != "alice@example.com" {
		t.Errorf("user name = %q, want alice@example.com (email claim, no prefix)", name)
	}
	if groups := res.User.GetGroups(); !slices.Equal(groups, []string{"dev", "ops"}) {
		t.Errorf("groups = %v, want [dev ops]", groups)
	}
	if exp := payload(t, cred.Token)["exp"].(float64); !cred.ExpiresAt.Equal(time.Unix(int64(exp), 0)) {
		t.Errorf("ExpiresAt %v is not the token's exp %v", cred.ExpiresAt, exp)
	}

	// What the cluster rejects, each for one reason: the same claims
	// re-signed with the provider's key pass (the control), and each
	// variant fails in kube's authenticator and is refused by the plugin
	// before it is handed out.
	claims := payload(t, cred.Token)
	resign := func(mod func(map[string]any)) string {
		c := map[string]any{}
		for k, v := range claims {
			c[k] = v
		}
		if mod != nil {
			mod(c)
		}
		tok, err := d.OP.SignClaims(c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	control := resign(nil)
	if _, ok, err := authenticate(kubeAuth, control); !ok || err != nil {
		t.Fatalf("control token refused: %v", err)
	}
	askPlugin := func(token string, opts map[string]any) error {
		_, err := plugin.Credential(ctx, sdk.CredentialRequest{
			Strategy: "oidc", Options: opts,
			Cluster: sdk.Cluster{Name: "prod", Server: "https://prod.k8s.example.com:6443"},
			Session: sdk.Session{UserEntityRef: "user:default/alice", IDToken: token, IDTokenExpiresAt: cred.ExpiresAt},
		})
		return err
	}
	prodOpts := map[string]any{"clientId": d.ClientID, "issuer": d.OP.Issuer()}
	if err := askPlugin(control, prodOpts); err != nil {
		t.Fatalf("the plugin refused the control token: %v", err)
	}
	for _, tc := range []struct {
		name      string
		token     string
		kubeAuth  authenticator.Token
		opts      map[string]any
		kubeSays  string
		pluginSay string
	}{
		{"wrong audience", cred.Token, kubeAuthenticator(t, d.OP.Issuer(), d.OPCAPEM, "other-cluster"),
			map[string]any{"clientId": "other-cluster"}, "audience", "client id"},
		{"expired", resign(func(c map[string]any) {
			c["iat"] = float64(time.Now().Add(-2 * time.Hour).Unix())
			c["exp"] = float64(time.Now().Add(-time.Hour).Unix())
		}), kubeAuth, prodOpts, "expired", "expired"},
		{"email not verified", resign(func(c map[string]any) { c["email_verified"] = false }), kubeAuth, prodOpts, "email not verified", "not verified"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, ok, err := authenticate(tc.kubeAuth, tc.token)
			if ok || err == nil || !strings.Contains(err.Error(), tc.kubeSays) {
				t.Errorf("kube's authenticator: ok=%v err=%v, want a refusal mentioning %q", ok, err, tc.kubeSays)
			}
			var ie *sdk.InvalidInputError
			if err := askPlugin(tc.token, tc.opts); !errors.As(err, &ie) || !strings.Contains(err.Error(), tc.pluginSay) {
				t.Errorf("oidc-cluster plugin: %v, want a refusal mentioning %q", err, tc.pluginSay)
			}
		})
	}

	// Through the daemon, a cluster with another client id is refused (403)
	// with the reason, and audited.
	_, err = cli.Credential(ctx, "other")
	if err == nil || !strings.Contains(err.Error(), `client id "other-cluster"`) {
		t.Errorf("credential for a cluster with another client id: %v", err)
	}
	if !strings.Contains(d.Audit.String(), `"reason":"strategy-refused"`) {
		t.Errorf("the refusal is not audited: %s", d.Audit.String())
	}

	// The Palette session token (HS256) is no credential: kube rejects it.
	hs := "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9." + base64.RawURLEncoding.EncodeToString(mustJSON(claims)) + ".c2lnbmF0dXJl"
	if _, ok, err := authenticate(kubeAuth, hs); ok || err == nil {
		t.Errorf("kube accepted an HS256 token: %v", err)
	}
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}
