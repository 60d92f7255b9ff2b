// Package kubetest runs, inside a test, a daemon's HTTP side with the
// Kubernetes broker mounted, in front of a real OpenID provider
// (host/devprovider, zitadel's certified OP) that signs one user in without
// a login page, and a browser that follows redirects with a cookie jar.
package kubetest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/spectroauth/spectroauth/host/cliauth"
	"github.com/spectroauth/spectroauth/host/devprovider"
	"github.com/spectroauth/spectroauth/host/identity"
	"github.com/spectroauth/spectroauth/host/internal/cliwire"
	"github.com/spectroauth/spectroauth/host/kube"
	"github.com/spectroauth/spectroauth/host/server"
	"github.com/spectroauth/spectroauth/host/session"
	"github.com/spectroauth/spectroauth/host/signin"
	"github.com/spectroauth/spectroauth/host/upstream"
)

// Options shape the daemon.
type Options struct {
	// ClientID is the daemon's client id at the provider, and so the aud of
	// the ID tokens. Default "spectroauth".
	ClientID string
	// IDTokenLifetime defaults to the provider's default (1h).
	IDTokenLifetime time.Duration
	// Clusters builds the static clusters once the provider runs (its
	// issuer and CA are known then).
	Clusters func(d *Daemon) []kube.Cluster
	// Sources are the broker's cluster sources.
	Sources []kube.SourceConfig
	// Users replaces the default users (alice, verified, groups dev and
	// ops; bob, unverified). The first one is signed in automatically.
	Users []devprovider.User
}

// Daemon is the running test daemon.
type Daemon struct {
	// OP is the provider.
	OP *devprovider.Provider
	// OPServer serves OP over https.
	OPServer *httptest.Server
	// OPCAPEM is the PEM of the provider's TLS certificate.
	OPCAPEM []byte
	// ClientID is the daemon's client id.
	ClientID string
	// Server is the daemon's HTTP side.
	Server *server.Server
	// CLI is the command-line routes, mounted on Server.
	CLI *cliauth.Handler
	// Broker is the Kubernetes broker, mounted on Server.
	Broker *kube.Broker
	// URL is the daemon's base URL (http on 127.0.0.1).
	URL string
	// Audit collects the audit log.
	Audit *SyncBuffer
	// Browser follows redirects with a cookie jar, like a user's browser.
	Browser *http.Client

	t testing.TB
}

// SyncBuffer is a bytes.Buffer safe for concurrent use.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write implements io.Writer.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func boolPtr(b bool) *bool { return &b }

// Start starts the provider and the daemon; both stop when the test ends.
func Start(t testing.TB, o Options) *Daemon {
	t.Helper()
	d := &Daemon{t: t, ClientID: o.ClientID, Audit: &SyncBuffer{}}
	if d.ClientID == "" {
		d.ClientID = "spectroauth"
	}
	srv := httptest.NewUnstartedServer(nil)
	d.URL = "http://" + srv.Listener.Addr().String()
	callback := d.URL + "/api/auth/spectrocloud/handler/frame"

	d.OPServer = httptest.NewUnstartedServer(nil)
	issuer := "https://" + d.OPServer.Listener.Addr().String()
	users := o.Users
	if users == nil {
		users = []devprovider.User{
			{Username: "alice", Email: "alice@example.com", EmailVerified: boolPtr(true), GivenName: "Alice", FamilyName: "Liddell", Groups: []string{"dev", "ops"}},
			{Username: "bob", Email: "bob@example.com", EmailVerified: boolPtr(false), Name: "Bob"},
		}
	}
	op, err := devprovider.New(devprovider.Config{
		Issuer:          issuer,
		Clients:         []devprovider.Client{{ID: d.ClientID, Secret: "client-secret", RedirectURIs: []string{callback}}},
		Users:           users,
		AutoApprove:     users[0].Username,
		RefreshTokens:   true,
		IDTokenLifetime: o.IDTokenLifetime,
	})
	if err != nil {
		t.Fatal(err)
	}
	d.OP = op
	d.OPServer.Config.Handler = op
	d.OPServer.StartTLS()
	t.Cleanup(d.OPServer.Close)
	d.OPCAPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d.OPServer.Certificate().Raw})

	up, err := upstream.New(context.Background(), upstream.Config{
		Issuer:       op.Issuer(),
		ClientID:     d.ClientID,
		ClientSecret: "client-secret",
		Scopes:       []string{"openid", "profile", "email", "offline_access"},
		HTTPClient:   d.OPServer.Client(),
	})
	if err != nil {
		t.Fatal(err)
	}
	userInfo := identity.NewMemoryUserInfoStore()
	iss, err := identity.New(identity.Config{Issuer: d.URL + "/api/auth", KeyStore: identity.NewMemoryKeyStore(), UserInfo: userInfo})
	if err != nil {
		t.Fatal(err)
	}
	sessions := session.NewMemoryStore(session.Options{SweepInterval: -1, Logger: hclog.NewNullLogger()})
	t.Cleanup(func() { _ = sessions.Close() })
	d.Server, err = server.New(server.Config{
		BaseURL:    d.URL,
		AppBaseURL: "http://localhost:3000",
		Envs: map[string]*server.Env{"development": {
			Upstream:        up,
			SignIn:          signin.Chain{{Name: "builtin/emailLocalPart", Resolver: signin.EmailLocalPart{}}},
			Scopes:          []string{"offline_access"},
			RefreshMargin:   5 * time.Minute,
			SessionDuration: 24 * time.Hour,
		}},
		Identity: iss,
		UserInfo: userInfo,
		Sessions: sessions,
		FlowKey:  []byte(strings.Repeat("f", 32)),
	})
	if err != nil {
		t.Fatal(err)
	}
	// The command-line routes; the device sign-in's polling as short as
	// the protocol allows.
	if d.CLI, err = cliauth.Mount(cliauth.Config{Lifecycle: d.Server.Lifecycle(), Front: d.Server, DeviceInterval: time.Second}); err != nil {
		t.Fatal(err)
	}
	var clusters []kube.Cluster
	if o.Clusters != nil {
		clusters = o.Clusters(d)
	}
	d.Broker, err = kube.New(kube.Config{
		Clusters:        clusters,
		Sources:         o.Sources,
		Sessions:        d.Server.UserSession,
		CLISessions:     d.CLI.Session,
		BrowserSessions: d.Server.BrowserSession,
		Audit:           kube.NewAuditLog(d.Audit),
	})
	if err != nil {
		t.Fatal(err)
	}
	d.Server.Handle(kube.RoutePrefix, d.Server.CORS(d.Broker))
	srv.Config.Handler = d.Server
	srv.Start()
	t.Cleanup(srv.Close)

	jar, _ := cookiejar.New(nil)
	d.Browser = &http.Client{Jar: jar, Timeout: 20 * time.Second, Transport: d.OPClient().Transport}
	return d
}

// OpenBrowser is a Client.OpenBrowser that visits u in the test browser,
// following every redirect (to the provider, back to the daemon), allowing
// the sign-in on the daemon's consent page, and following the daemon's
// redirect on to the command's loopback address.
func (d *Daemon) OpenBrowser(u string) error {
	go func() {
		if err := d.SignInBrowser(u, "allow"); err != nil {
			d.t.Errorf("test browser: %v", err)
		}
	}()
	return nil
}

// SignInBrowser visits a command-line sign-in's start URL in the test
// browser and answers the consent page with decision ("allow" or "deny").
func (d *Daemon) SignInBrowser(u, decision string) error {
	res, err := d.Browser.Get(u)
	if err != nil {
		return err
	}
	page, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		return err
	}
	form, err := cliwire.ParseConsentPage(page)
	if err != nil {
		return fmt.Errorf("the sign-in ended at %s with %d without a consent page: %s", res.Request.URL, res.StatusCode, page)
	}
	form.Fields.Set("decision", decision)
	res, err = d.Browser.PostForm(d.URL+form.Action, form.Fields)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return nil
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// EnterDeviceCode does in the test browser what a user does with the URL
// and code a device sign-in printed: open the verification page, enter the
// code, sign in with the provider. It returns the last page.
func (d *Daemon) EnterDeviceCode(verificationURI, userCode string) (string, error) {
	res, err := d.Browser.Get(verificationURI)
	if err != nil {
		return "", err
	}
	page, _ := io.ReadAll(res.Body)
	res.Body.Close()
	m := csrfField.FindSubmatch(page)
	if m == nil {
		return "", fmt.Errorf("the verification page (%d) has no form: %s", res.StatusCode, page)
	}
	res, err = d.Browser.PostForm(verificationURI, url.Values{"csrf": {string(m[1])}, "user_code": {userCode}, "decision": {"allow"}})
	if err != nil {
		return "", err
	}
	page, _ = io.ReadAll(res.Body)
	res.Body.Close()
	return string(page), nil
}

// OPClient returns an HTTP client that trusts the provider's certificate.
func (d *Daemon) OPClient() *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(d.OPCAPEM)
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}
