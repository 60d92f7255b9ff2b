package kubecli

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/spectroauth/spectroauth/host/internal/cliwire"
)

// Login signs in with SpectroCloud in the browser (RFC 8252: a loopback
// redirect on 127.0.0.1, PKCE and state), or with the device authorization
// grant when Device is set, and keeps the session. It does so
// even when a session exists, replacing it.
func (c *Client) Login(ctx context.Context) (user string, err error) {
	unlock, err := c.lock(ctx)
	if err != nil {
		return "", err
	}
	defer unlock()
	s, err := c.signIn(ctx)
	if err != nil {
		return "", err
	}
	return s.User, nil
}

// signInContext bounds a sign-in by LoginTimeout.
func (c *Client) signInContext(ctx context.Context) (context.Context, context.CancelFunc) {
	timeout := c.LoginTimeout
	if timeout <= 0 {
		timeout = DefaultLoginTimeout
	}
	return context.WithTimeout(ctx, timeout)
}

// signIn runs the device sign-in when the Client is told to, else the
// browser sign-in; the caller holds the lock.
func (c *Client) signIn(ctx context.Context) (*session, error) {
	if c.Device {
		return c.deviceLogin(ctx)
	}
	return c.login(ctx)
}

// callbackResult is what reached the loopback listener.
type callbackResult struct {
	code string
	err  error
}

// login runs the browser sign-in; the caller holds the lock.
func (c *Client) login(ctx context.Context) (*session, error) {
	ctx, cancel := c.signInContext(ctx)
	defer cancel()

	state, err := randomString(32)
	if err != nil {
		return nil, err
	}
	verifier, err := randomString(32)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(verifier))
	challenge := base64.RawURLEncoding.EncodeToString(sum[:])

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listening on the loopback interface for the sign-in's redirect: %w", err)
	}
	redirectURI := "http://" + ln.Addr().String() + cliwire.CallbackPath
	results := make(chan callbackResult, 1)
	srv := &http.Server{
		Handler:           callbackHandler(state, results),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() { _ = srv.Serve(ln) }()
	defer func() {
		sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer scancel()
		_ = srv.Shutdown(sctx)
	}()

	q := url.Values{
		"redirect_uri":          {redirectURI},
		"state":                 {state},
		"code_challenge":        {challenge},
		"code_challenge_method": {"S256"},
	}
	if c.Env != "" {
		q.Set("env", c.Env)
	}
	startURL := c.base() + cliPrefix + "start?" + q.Encode()
	fmt.Fprintf(c.stderr(), "Sign in with SpectroCloud to use Kubernetes through %s.\nOpening your browser; if it does not open, visit:\n\n  %s\n\n"+
		"The browser asks you to confirm with this code: %s\nConfirm only if it shows the same code.\n\n", c.base(), startURL, cliwire.ConfirmationCode(challenge))
	open := c.OpenBrowser
	if open == nil {
		open = OpenBrowser
	}
	if err := open(startURL); err != nil {
		fmt.Fprintf(c.stderr(), "(could not open a browser: %v)\n", err)
	}

	var res callbackResult
	select {
	case res = <-results:
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for the browser sign-in: %w", ctx.Err())
	}
	if res.err != nil {
		return nil, res.err
	}
	tok, err := c.tokenRequest(ctx, url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {res.code},
		"code_verifier": {verifier},
		"redirect_uri":  {redirectURI},
	})
	if err != nil {
		return nil, fmt.Errorf("completing the sign-in at %s: %w", c.base(), err)
	}
	return c.saveSession(tok)
}

// saveSession keeps the session a sign-in's token answer started.
func (c *Client) saveSession(tok *tokenResponse) (*session, error) {
	if tok.RefreshToken == "" {
		return nil, fmt.Errorf("completing the sign-in at %s: the daemon issued no session", c.base())
	}
	id, err := randomString(16)
	if err != nil {
		return nil, err
	}
	s := &session{
		ID: id, Server: c.base(), Env: tok.Env, User: tok.User, RefreshToken: tok.RefreshToken,
		AccessToken: tok.AccessToken, AccessExpiry: c.now().Add(time.Duration(tok.ExpiresIn) * time.Second),
	}
	if err := writeJSON(c.sessionPath(), s); err != nil {
		return nil, fmt.Errorf("saving the session: %w", err)
	}
	fmt.Fprintf(c.stderr(), "Signed in to %s as %s.\n", c.base(), s.User)
	return s, nil
}

// callbackPage tells the user, in the browser, how the sign-in ended. Parsed on
// first use, not at every start of the daemon.
var callbackPage = sync.OnceValue(func() *template.Template {
	return template.Must(template.New("cb").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}} — spectroauth</title></head>
<body><h1>{{.Title}}</h1><p>{{.Message}}</p></body></html>
`))
})

// callbackHandler accepts the first redirect that carries the right state.
func callbackHandler(state string, results chan<- callbackResult) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		page := func(status int, title, msg string) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Header().Set("Cache-Control", "no-store")
			w.Header().Set("Content-Security-Policy", "default-src 'none'")
			w.WriteHeader(status)
			_ = callbackPage().Execute(w, map[string]string{"Title": title, "Message": msg})
		}
		if r.URL.Path != cliwire.CallbackPath {
			http.NotFound(w, r)
			return
		}
		q := r.URL.Query()
		if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(state)) != 1 {
			page(http.StatusBadRequest, "Sign-in refused", "This response does not belong to the sign-in the command started.")
			return
		}
		var res callbackResult
		if e := q.Get("error"); e != "" {
			desc := q.Get("error_description")
			if desc == "" {
				desc = e
			}
			res.err = fmt.Errorf("the sign-in failed: %s", strings.Map(printable, desc))
			page(http.StatusOK, "Sign-in failed", desc+" You can close this window.")
		} else if res.code = q.Get("code"); res.code == "" {
			res.err = errors.New("the sign-in's redirect carried no code")
			page(http.StatusBadRequest, "Sign-in failed", "No code. Run the command again.")
		} else {
			page(http.StatusOK, "Signed in", "You are signed in. You can close this window and return to the terminal.")
		}
		select {
		case results <- res:
		default: // a second redirect with the right state: the first one counts
		}
	})
}

func printable(r rune) rune {
	if r < ' ' || r == 0x7f {
		return -1
	}
	return r
}

func randomString(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("reading random bytes: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// OpenBrowser opens url with the system's browser: $BROWSER when set, else
// xdg-open, open (macOS) or the Windows URL handler. It does not wait for
// the browser.
func OpenBrowser(u string) error {
	var cmd *exec.Cmd
	switch {
	case os.Getenv("BROWSER") != "":
		cmd = exec.Command(os.Getenv("BROWSER"), u)
	case runtime.GOOS == "darwin":
		cmd = exec.Command("open", u)
	case runtime.GOOS == "windows":
		cmd = exec.Command("rundll32", "url.dll,FileProtocolHandler", u)
	default:
		cmd = exec.Command("xdg-open", u)
	}
	cmd.Stdout, cmd.Stderr = nil, nil
	if err := cmd.Start(); err != nil {
		return err
	}
	go func() { _ = cmd.Wait() }()
	return nil
}
