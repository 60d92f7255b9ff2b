package daemon

import (
	"fmt"
	"net/http"
	"net/url"

	"github.com/spectroauth/spectroauth/config"
	"github.com/spectroauth/spectroauth/host/lifecycle"
	"github.com/spectroauth/spectroauth/host/paletteapi"
	"github.com/spectroauth/spectroauth/host/server"
	"github.com/spectroauth/spectroauth/host/upstream"
)

// startPalette mounts paletteApi's route, when enabled: Palette's API as
// the signed-in user, its callers authenticated as the Kubernetes
// credential route's are.
func (d *Daemon) startPalette(srv *server.Server, base *http.Client) error {
	pc := d.cfg.PaletteAPI
	if !pc.Enabled {
		return nil
	}
	var allow []paletteapi.Rule
	for i, a := range pc.Allow {
		r, err := config.ParsePaletteRule(a)
		if err != nil {
			return fmt.Errorf("paletteApi.allow[%d]: %w", i, err)
		}
		allow = append(allow, r)
	}
	h, err := paletteapi.New(paletteapi.Config{
		Callers:        lifecycle.CredentialCallers{CLISessions: d.cli.Session, BrowserSessions: srv.BrowserSession},
		PaletteSession: srv.PaletteSession,
		BaseURL:        d.paletteBaseURL,
		Allow:          allow,
		HTTPClient:     upstream.NewBackChannelClient(base, pc.Timeout, paletteapi.MaxResponseBytes),
		Logger:         d.log.Named("palette-api"),
	})
	if err != nil {
		return fmt.Errorf("paletteApi: %w", err)
	}
	// CORS for Backstage's app, which calls with the session cookie.
	srv.Handle(paletteapi.RoutePrefix, srv.CORS(h))
	return nil
}

// paletteBaseURL is Palette's API for environment env: paletteApi.url, or
// the origin of the environment's issuer.
func (d *Daemon) paletteBaseURL(env string) (*url.URL, error) {
	if raw := d.cfg.PaletteAPI.URL; raw != "" {
		u, err := url.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("paletteApi.url: %w", err)
		}
		return u, nil
	}
	pe, ok := d.cfg.Auth.Providers.SpectroCloud[env]
	if !ok {
		return nil, fmt.Errorf("environment %q is not configured", env)
	}
	u, err := url.Parse(pe.Issuer)
	if err != nil {
		return nil, fmt.Errorf("auth.providers.spectrocloud.%s.issuer: %w", env, err)
	}
	return &url.URL{Scheme: u.Scheme, Host: u.Host}, nil
}
