// Package kubecli is the command-line side of spectroauth's Kubernetes
// credentials: the kubectl exec credential command (spectroauthd
// kube-credential), the kubeconfig generator (spectroauthd kubeconfig), and
// the browser sign-in they share (spectroauthd login, logout).
//
// A Client keeps, per daemon and environment, under the user's cache
// directory (mode 0700, files 0600):
//
//   - the CLI session: the refresh token the daemon's /cli/token issued
//     after a browser sign-in (it rotates on every use: only the newest is
//     kept), and the last command-line access token;
//   - one credential per cluster, reused until a minute before it expires,
//     and only while the CLI session it was issued to is the current one.
//
// Every operation holds an exclusive file lock per daemon and environment,
// so concurrent kubectl invocations wait for one another instead of each
// refreshing (or signing in) at once; the second one finds the first one's
// credential in the cache.
package kubecli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gofrs/flock"

	"github.com/spectroauth/spectroauth/host/internal/backstageerr"
)

// Paths of the daemon's routes.
const (
	cliPrefix        = "/api/auth/spectrocloud/cli/"
	kubePrefix       = "/api/auth/spectrocloud/kubernetes/"
	maxResponseBytes = 1 << 20
)

// Margins before expiry at which cached tokens are no longer used.
const (
	// CredentialMargin: a cached cluster credential is used while it has
	// more than this left.
	CredentialMargin = time.Minute
	// TokenMargin: a cached access token is used while it has more than
	// this left.
	TokenMargin = time.Minute
	// DefaultLockTimeout bounds the wait for another invocation's lock.
	DefaultLockTimeout = 2 * time.Minute
	// DefaultLoginTimeout bounds a browser sign-in.
	DefaultLoginTimeout = 5 * time.Minute
)

// ErrNotSignedIn reports that there is no usable CLI session and the
// Client may not start a browser sign-in.
var ErrNotSignedIn = errors.New("not signed in")

// Client talks to one daemon for one user.
type Client struct {
	// Server is the daemon's base URL (server.baseUrl), e.g.
	// https://auth.example.com. Required.
	Server string
	// Env is the Backstage environment to sign in to; empty lets the daemon
	// pick its only one.
	Env string
	// CacheDir holds sessions, credentials and locks. Required.
	CacheDir string
	// HTTP talks to the daemon; default a client with a 30s timeout.
	HTTP *http.Client
	// Interactive allows a sign-in when there is no usable session.
	Interactive bool
	// Device signs in with the device authorization grant (a URL and a code
	// to enter in any browser) instead of opening a local browser.
	Device bool
	// OpenBrowser opens a URL for the user; default the system's opener.
	OpenBrowser func(url string) error
	// Stderr receives what the user must read (sign-in instructions).
	Stderr io.Writer
	// Now defaults to time.Now.
	Now func() time.Time
	// LoginTimeout bounds a browser sign-in; default DefaultLoginTimeout.
	LoginTimeout time.Duration
	// LockTimeout bounds the wait for the lock; default DefaultLockTimeout.
	LockTimeout time.Duration
}

// Credential is a cluster credential.
type Credential struct {
	// Cluster is the cluster's name at the daemon.
	Cluster string `json:"cluster"`
	// Token is the bearer token, when the strategy issues one.
	Token string `json:"token,omitempty"`
	// ExpiresAt is when it stops working; zero when unknown (not cached).
	ExpiresAt time.Time `json:"expiresAt,omitzero"`
	// ClientCertificateData and ClientKeyData are PEM, for strategies that
	// issue client certificates.
	ClientCertificateData string `json:"clientCertificateData,omitempty"`
	ClientKeyData         string `json:"clientKeyData,omitempty"`
}

// String describes the credential without its secrets.
func (c Credential) String() string {
	return fmt.Sprintf("Credential{Cluster:%q ExpiresAt:%s}", c.Cluster, c.ExpiresAt.Format(time.RFC3339))
}

// cachedCredential is a credential in the cache, bound to the CLI session
// it was issued to: signing in again, as anyone, makes it unusable.
type cachedCredential struct {
	Credential
	// Session identifies the session (sessionID).
	Session string `json:"session"`
}

// session is the cached CLI session.
type session struct {
	// ID names the session for the credential cache; random, made at
	// sign-in (the refresh token changes on every use).
	ID           string    `json:"id"`
	Server       string    `json:"server"`
	Env          string    `json:"env"`
	User         string    `json:"user"`
	RefreshToken string    `json:"refreshToken"`
	AccessToken  string    `json:"accessToken"`
	AccessExpiry time.Time `json:"accessExpiresAt"`
}

func (c *Client) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// http is the client for calls to the daemon. It never follows a redirect:
// the daemon does not send any, and following one would resend the session
// handle (or a one-time code) to wherever a proxy or an attacker points.
func (c *Client) http() *http.Client {
	hc := &http.Client{Timeout: 30 * time.Second}
	if c.HTTP != nil {
		cp := *c.HTTP
		hc = &cp
	}
	hc.CheckRedirect = func(req *http.Request, _ []*http.Request) error {
		return fmt.Errorf("the daemon answered with a redirect to %s; refusing to follow it with the session", req.URL.Redacted())
	}
	return hc
}

func (c *Client) stderr() io.Writer {
	if c.Stderr != nil {
		return c.Stderr
	}
	return io.Discard
}

func (c *Client) base() string { return strings.TrimRight(c.Server, "/") }

// key names this daemon and environment in the cache.
func (c *Client) key() string {
	sum := sha256.Sum256([]byte(c.base() + "\n" + c.Env))
	return hex.EncodeToString(sum[:12])
}

func (c *Client) sessionPath() string { return filepath.Join(c.CacheDir, "sessions", c.key()+".json") }

func (c *Client) credentialPath(cluster string) string {
	sum := sha256.Sum256([]byte(cluster))
	return filepath.Join(c.CacheDir, "credentials", c.key()+"-"+hex.EncodeToString(sum[:12])+".json")
}

// lock takes the exclusive lock of this daemon and environment.
func (c *Client) lock(ctx context.Context) (func(), error) {
	if c.Server == "" || c.CacheDir == "" {
		return nil, errors.New("the daemon URL and the cache directory are required")
	}
	dir := filepath.Join(c.CacheDir, "locks")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the cache directory %s: %w", dir, err)
	}
	timeout := c.LockTimeout
	if timeout <= 0 {
		timeout = DefaultLockTimeout
	}
	lctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	fl := flock.New(filepath.Join(dir, c.key()+".lock"), flock.SetPermissions(0o600))
	ok, err := fl.TryLockContext(lctx, 25*time.Millisecond)
	if err != nil || !ok {
		if err == nil {
			err = lctx.Err()
		}
		return nil, fmt.Errorf("waiting for another spectroauthd kube-credential (lock %s): %w", fl.Path(), err)
	}
	return func() { _ = fl.Unlock() }, nil
}

// readJSON reads a cache file; a missing or unreadable one is no error.
func readJSON(path string, v any) bool {
	b, err := os.ReadFile(path)
	return err == nil && json.Unmarshal(b, v) == nil
}

// writeJSON writes a cache file atomically with mode 0600.
func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("creating the cache directory: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return fmt.Errorf("writing the cache: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("writing the cache: %w", err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("writing the cache: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing the cache: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing the cache: %w", err)
	}
	return nil
}

// Credential returns this user's credential for cluster: from the cache
// while it has more than CredentialMargin left, else from the daemon (with
// a browser sign-in first when there is no usable session and the client is
// interactive).
func (c *Client) Credential(ctx context.Context, cluster string) (Credential, error) {
	unlock, err := c.lock(ctx)
	if err != nil {
		return Credential{}, err
	}
	defer unlock()

	path := c.credentialPath(cluster)
	var cached cachedCredential
	if sid := c.sessionID(); sid != "" && readJSON(path, &cached) && cached.Session == sid && cached.Cluster == cluster &&
		!cached.ExpiresAt.IsZero() && cached.ExpiresAt.Sub(c.now()) > CredentialMargin {
		return cached.Credential, nil
	}
	for attempt := 0; ; attempt++ {
		token, err := c.accessToken(ctx)
		if err != nil {
			return Credential{}, err
		}
		cred, err := c.requestCredential(ctx, token, cluster)
		var ae *apiError
		if errors.As(err, &ae) && ae.status == http.StatusUnauthorized && attempt == 0 {
			// The token was refused: renew it with the session handle (which
			// finds out whether the session itself ended, and then signs in
			// again when that is allowed).
			c.dropAccessToken()
			continue
		}
		if err != nil {
			return Credential{}, err
		}
		if sid := c.sessionID(); sid != "" && !cred.ExpiresAt.IsZero() {
			if err := writeJSON(path, cachedCredential{Credential: cred, Session: sid}); err != nil {
				fmt.Fprintf(c.stderr(), "spectroauthd: could not cache the credential: %v\n", err)
			}
		}
		return cred, nil
	}
}

// ClusterInfo is one cluster of the daemon's clusters route.
type ClusterInfo struct {
	// Name is the cluster's name at the daemon.
	Name string `json:"name"`
	// Title and Description are for people.
	Title       string `json:"title"`
	Description string `json:"description"`
	// Server is the API server's https URL.
	Server string `json:"server"`
	// CAData is the base64 PEM bundle, as in a kubeconfig.
	CAData string `json:"caData"`
	// Strategy is the "plugin/strategy" that issues its credentials.
	Strategy string `json:"strategy"`
}

// Clusters returns the clusters the user may ask credentials for.
func (c *Client) Clusters(ctx context.Context) ([]ClusterInfo, error) {
	unlock, err := c.lock(ctx)
	if err != nil {
		return nil, err
	}
	token, err := c.accessToken(ctx)
	unlock()
	if err != nil {
		return nil, err
	}
	var out struct {
		Clusters []ClusterInfo `json:"clusters"`
	}
	if err := c.call(ctx, http.MethodGet, kubePrefix+"clusters", token, nil, "", &out); err != nil {
		return nil, fmt.Errorf("listing clusters: %w", err)
	}
	return out.Clusters, nil
}

// accessToken returns a command-line access token with time left: cached,
// renewed with the (rotating) refresh token, or from a new browser sign-in.
// The caller holds the lock.
func (c *Client) accessToken(ctx context.Context) (string, error) {
	var s session
	if readJSON(c.sessionPath(), &s) && s.RefreshToken != "" {
		if s.AccessToken != "" && s.AccessExpiry.Sub(c.now()) > TokenMargin {
			return s.AccessToken, nil
		}
		tok, err := c.tokenRequest(ctx, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {s.RefreshToken}})
		switch {
		case err == nil:
			// The daemon rotated the refresh token: the one presented is
			// spent, and presenting it again would end the session.
			s.AccessToken, s.AccessExpiry, s.User = tok.AccessToken, c.now().Add(time.Duration(tok.ExpiresIn)*time.Second), tok.User
			if tok.RefreshToken != "" {
				s.RefreshToken = tok.RefreshToken
			}
			if err := writeJSON(c.sessionPath(), s); err != nil {
				fmt.Fprintf(c.stderr(), "spectroauthd: could not cache the session (the next command signs in again): %v\n", err)
			}
			return s.AccessToken, nil
		case isInvalidGrant(err):
			c.forgetSession()
		default:
			return "", fmt.Errorf("renewing your session at %s: %w", c.base(), err)
		}
	}
	if !c.Interactive {
		return "", fmt.Errorf("%w to %s, or the session has ended: run `spectroauthd login --server %s` in a terminal (or kubectl interactively) to sign in with SpectroCloud", ErrNotSignedIn, c.base(), c.base())
	}
	fresh, err := c.signIn(ctx)
	if err != nil {
		return "", err
	}
	return fresh.AccessToken, nil
}

// sessionID identifies the cached CLI session, "" when there is none. The
// caller holds the lock.
func (c *Client) sessionID() string {
	var s session
	if !readJSON(c.sessionPath(), &s) || s.RefreshToken == "" {
		return ""
	}
	return s.ID
}

// dropAccessToken forgets the cached access token but keeps the session.
func (c *Client) dropAccessToken() {
	var s session
	if readJSON(c.sessionPath(), &s) {
		s.AccessToken, s.AccessExpiry = "", time.Time{}
		_ = writeJSON(c.sessionPath(), s)
	}
}

func (c *Client) forgetSession() {
	_ = os.Remove(c.sessionPath())
}

// tokenResponse is the daemon's /cli/token answer.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
	User         string `json:"user"`
	Env          string `json:"env"`
}

// oauthError is the token endpoint's error.
type oauthError struct {
	Code        string `json:"error"`
	Description string `json:"error_description"`
}

func (e *oauthError) Error() string {
	if e.Description != "" {
		return e.Description
	}
	return e.Code
}

func isInvalidGrant(err error) bool {
	var oe *oauthError
	return errors.As(err, &oe) && oe.Code == "invalid_grant"
}

func (c *Client) tokenRequest(ctx context.Context, form url.Values) (*tokenResponse, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base()+cliPrefix+"token", strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	res, err := c.http().Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, maxResponseBytes))
	if err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusOK {
		oe := &oauthError{}
		if json.Unmarshal(body, oe) != nil || oe.Code == "" {
			return nil, fmt.Errorf("the daemon answered %s", res.Status)
		}
		return nil, oe
	}
	var tr tokenResponse
	if err := json.Unmarshal(body, &tr); err != nil || tr.AccessToken == "" {
		return nil, fmt.Errorf("the daemon's token answer is not usable")
	}
	return &tr, nil
}

// apiError is an error answer of the daemon's Kubernetes routes
// (Backstage's error body).
type apiError struct {
	status  int
	name    string
	message string
}

func (e *apiError) Error() string {
	if e.message == "" {
		return fmt.Sprintf("the daemon answered %d %s", e.status, http.StatusText(e.status))
	}
	return e.message
}

// call makes an authenticated JSON request to the daemon.
func (c *Client) call(ctx context.Context, method, path, token string, body []byte, contentType string, out any) error {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base()+path, r)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	res, err := c.http().Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, maxResponseBytes))
	if err != nil {
		return err
	}
	if res.StatusCode != http.StatusOK {
		ae := &apiError{status: res.StatusCode}
		var eb struct {
			Error backstageerr.Detail `json:"error"`
		}
		if json.Unmarshal(raw, &eb) == nil {
			ae.name, ae.message = eb.Error.Name, eb.Error.Message
		}
		return ae
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("the daemon's answer is not JSON: %w", err)
	}
	return nil
}

func (c *Client) requestCredential(ctx context.Context, token, cluster string) (Credential, error) {
	body, _ := json.Marshal(map[string]string{"cluster": cluster})
	var res struct {
		Token                 string     `json:"token"`
		ExpiresAt             *time.Time `json:"expiresAt"`
		ClientCertificateData string     `json:"clientCertificateData"`
		ClientKeyData         string     `json:"clientKeyData"`
	}
	if err := c.call(ctx, http.MethodPost, kubePrefix+"credential", token, body, "application/json", &res); err != nil {
		return Credential{}, fmt.Errorf("getting a credential for cluster %q from %s: %w", cluster, c.base(), err)
	}
	if res.Token == "" && res.ClientCertificateData == "" {
		return Credential{}, fmt.Errorf("getting a credential for cluster %q: the daemon's answer holds none", cluster)
	}
	cred := Credential{Cluster: cluster, Token: res.Token, ClientCertificateData: res.ClientCertificateData, ClientKeyData: res.ClientKeyData}
	if res.ExpiresAt != nil {
		cred.ExpiresAt = res.ExpiresAt.UTC()
	}
	return cred, nil
}

// Logout ends the CLI session at the daemon and forgets it and every cached
// credential of this daemon and environment.
func (c *Client) Logout(ctx context.Context) error {
	unlock, err := c.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	var s session
	var errs []error
	if readJSON(c.sessionPath(), &s) && s.RefreshToken != "" {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base()+cliPrefix+"logout",
			strings.NewReader(url.Values{"refresh_token": {s.RefreshToken}}.Encode()))
		if err == nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			var res *http.Response
			if res, err = c.http().Do(req); err == nil {
				res.Body.Close()
				if res.StatusCode != http.StatusOK {
					err = fmt.Errorf("the daemon answered %s", res.Status)
				}
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("signing out at %s (the local session is forgotten anyway): %w", c.base(), err))
		}
	}
	c.forgetSession()
	matches, _ := filepath.Glob(filepath.Join(c.CacheDir, "credentials", c.key()+"-*.json"))
	for _, m := range matches {
		_ = os.Remove(m)
	}
	return errors.Join(errs...)
}
