package kubecli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spectroauth/spectroauth/host/internal/cliwire"
)

// deviceGrantType is RFC 8628's grant type.
const deviceGrantType = "urn:ietf:params:oauth:grant-type:device_code"

// deviceLogin signs in with the device authorization grant (RFC 8628): it
// prints a URL and a code for the user to enter in any browser, and polls
// the daemon until the user has signed in there. The caller holds the lock.
func (c *Client) deviceLogin(ctx context.Context) (*session, error) {
	ctx, cancel := c.signInContext(ctx)
	defer cancel()
	form := url.Values{}
	if c.Env != "" {
		form.Set("env", c.Env)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base()+cliPrefix+"device_authorization", strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	res, err := c.http().Do(req)
	if err != nil {
		return nil, fmt.Errorf("starting the device sign-in at %s: %w", c.base(), err)
	}
	body, err := io.ReadAll(io.LimitReader(res.Body, maxResponseBytes))
	res.Body.Close()
	var da cliwire.DeviceAuthorization
	if err != nil || res.StatusCode != http.StatusOK || json.Unmarshal(body, &da) != nil || da.DeviceCode == "" || da.UserCode == "" {
		return nil, fmt.Errorf("starting the device sign-in at %s: the daemon answered %s", c.base(), res.Status)
	}
	fmt.Fprintf(c.stderr(), "Sign in with SpectroCloud to use Kubernetes through %s.\nIn any browser, open\n\n  %s\n\nand enter the code\n\n  %s\n\n(or open %s)\nWaiting for you to sign in…\n",
		c.base(), da.VerificationURI, da.UserCode, da.VerificationURIComplete)

	interval := time.Duration(max(da.Interval, 1)) * time.Second
	for {
		timer := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, fmt.Errorf("waiting for the device sign-in: %w", ctx.Err())
		case <-timer.C:
		}
		tok, err := c.tokenRequest(ctx, url.Values{"grant_type": {deviceGrantType}, "device_code": {da.DeviceCode}})
		var oe *oauthError
		switch {
		case err == nil:
			return c.saveSession(tok)
		case errors.As(err, &oe) && oe.Code == "authorization_pending":
		case errors.As(err, &oe) && oe.Code == "slow_down":
			interval += 5 * time.Second
		case errors.As(err, &oe) && oe.Code == "expired_token":
			return nil, errors.New("the device sign-in expired before you signed in; run the command again")
		case errors.As(err, &oe) && oe.Code == "access_denied":
			return nil, errors.New("the device sign-in was refused in the browser")
		default:
			return nil, fmt.Errorf("completing the device sign-in at %s: %w", c.base(), err)
		}
	}
}
