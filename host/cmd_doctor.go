package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/spectroauth/spectroauth/config"
	"github.com/spectroauth/spectroauth/host/pluginhost"
	"github.com/spectroauth/spectroauth/host/server"
	"github.com/spectroauth/spectroauth/sdk"
)

// maxClockSkew is the largest difference between this host's clock and
// the provider's that doctor accepts: ID token checks (iat, exp, nbf) and
// session lifetimes go wrong past it.
const maxClockSkew = 30 * time.Second

// Palette facts doctor reads from the palette-clusters plugin's listing
// (the plugin's own constants; the host does not import plugins).
const (
	palettePluginName      = "palette-clusters"
	paletteLabelProject    = "spectrocloud.com/project"
	paletteAnnotationIssue = "spectrocloud.com/oidc-issuer-url"
	paletteAnnotationStale = "spectrocloud.com/stale-since"
)

// doctorCmd is `spectroauthd doctor -config FILE`: live checks of a
// deployment, one line each, with what to fix when one fails. It exits 1
// if any check fails.
func doctorCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c commonFlags
	c.register(fs)
	timeout := fs.Duration("timeout", 2*time.Minute, "how long all the checks may take")
	if err := fs.Parse(args); err != nil {
		return parseFailed(err)
	}
	log, cfg, code := c.loadRequired("doctor", stderr)
	if code != 0 {
		return code
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	d := &doctor{cfg: cfg, log: log, now: time.Now, http: &http.Client{
		Timeout:       15 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
	checks := d.run(ctx)
	failed := 0
	for _, ch := range checks {
		ch.print(stdout)
		if !ch.ok {
			failed++
		}
	}
	if failed > 0 {
		fmt.Fprintf(stderr, "doctor: %d of %d checks failed\n", failed, len(checks))
		return 1
	}
	return 0
}

// check is the outcome of one check.
type check struct {
	name   string
	ok     bool
	detail string // what was found
	fix    string // what to do, when it failed
}

func pass(name, format string, args ...any) check {
	return check{name: name, ok: true, detail: fmt.Sprintf(format, args...)}
}

func fail(name, fix, format string, args ...any) check {
	return check{name: name, detail: fmt.Sprintf(format, args...), fix: fix}
}

func (c check) print(w io.Writer) {
	status := "ok  "
	if !c.ok {
		status = "FAIL"
	}
	line := fmt.Sprintf("%s  %s: %s", status, c.name, oneLine(c.detail))
	if !c.ok && c.fix != "" {
		line += " -> fix: " + c.fix
	}
	fmt.Fprintln(w, line)
}

// oneLine keeps a message on one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// doctor runs the checks of one configuration.
type doctor struct {
	cfg  *config.Config
	log  hclog.Logger
	http *http.Client
	now  func() time.Time
}

// run runs every check: the providers', the storage's, the plugins', the
// Palette sources'.
func (d *doctor) run(ctx context.Context) []check {
	var out []check
	for _, env := range slices.Sorted(maps.Keys(d.cfg.Auth.Providers.SpectroCloud)) {
		out = append(out, d.provider(ctx, env, d.cfg.Auth.Providers.SpectroCloud[env])...)
	}
	out = append(out, d.storage(ctx))
	uses := map[string][]pluginhost.Use{}
	for _, u := range pluginhost.UsesFromConfig(d.cfg) {
		uses[u.Plugin] = append(uses[u.Plugin], u)
	}
	plugins, reports := d.plugins(ctx, uses)
	out = append(out, plugins...)
	out = append(out, d.paletteSources(ctx, reports, uses)...)
	return out
}

// providerMetadata is what doctor reads of a discovery document.
type providerMetadata struct {
	Issuer                   string   `json:"issuer"`
	TokenEndpoint            string   `json:"token_endpoint"`
	JWKSURI                  string   `json:"jwks_uri"`
	TokenEndpointAuthMethods []string `json:"token_endpoint_auth_methods_supported"`
}

// provider checks one environment's provider: discovery and its issuer,
// the JWKS, the client's authentication at the token endpoint, the clock.
func (d *doctor) provider(ctx context.Context, env string, p config.ProviderEnv) []check {
	key := "auth.providers.spectrocloud." + env
	name := func(what string) string { return "provider " + env + ": " + what }
	var out []check
	md := providerMetadata{Issuer: p.Issuer, TokenEndpoint: p.TokenURL, JWKSURI: p.JWKSURL}
	var date string
	if p.ManualEndpoints() {
		out = append(out, pass(name("discovery"), "not used: the endpoints are given by hand (%s.tokenUrl, jwksUrl)", key))
	} else {
		u := strings.TrimSuffix(p.Issuer, "/") + "/.well-known/openid-configuration"
		body, hdr, status, err := d.get(ctx, u)
		date = hdr.Get("Date")
		switch {
		case err != nil:
			return append(out, fail(name("discovery"), fmt.Sprintf("check %s.issuer and that this host reaches it (DNS, proxy, firewall)", key), "cannot fetch %s: %v", u, err))
		case status != http.StatusOK:
			return append(out, fail(name("discovery"), fmt.Sprintf("set %s.issuer to the tenant's issuer, https://<console-host>/v1/oidc/tenant/<tenantUid>", key), "%s answered %d", u, status))
		}
		if err := json.Unmarshal(body, &md); err != nil {
			return append(out, fail(name("discovery"), fmt.Sprintf("check %s.issuer: it does not serve a discovery document", key), "%s is not a discovery document: %v", u, err))
		}
		if md.Issuer != p.Issuer {
			return append(out, fail(name("discovery"), fmt.Sprintf("set %s.issuer to exactly %q", key, md.Issuer), "the discovery document's issuer is %q, the configuration's %q: every sign-in would fail", md.Issuer, p.Issuer))
		}
		out = append(out, pass(name("discovery"), "%s answers; its issuer is the configured one", u))
	}
	out = append(out, d.jwks(ctx, name("JWKS"), key, md.JWKSURI))
	out = append(out, d.tokenEndpoint(ctx, name("token endpoint"), key, p, md))
	out = append(out, d.clock(ctx, name("clock"), md, date))
	return out
}

// get fetches a URL, bounded in size.
func (d *doctor) get(ctx context.Context, u string) ([]byte, http.Header, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, http.Header{}, 0, err
	}
	req.Header.Set("Accept", "application/json")
	return d.do(req)
}

func (d *doctor) do(req *http.Request) ([]byte, http.Header, int, error) {
	res, err := d.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, http.Header{}, 0, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	return body, res.Header, res.StatusCode, err
}

// jwks checks that the key set loads and holds a signing key.
func (d *doctor) jwks(ctx context.Context, name, key, u string) check {
	fix := fmt.Sprintf("check the provider's jwks_uri (or %s.jwksUrl); ID tokens cannot be verified without it", key)
	if u == "" {
		return fail(name, fix, "the provider names no JWKS")
	}
	body, _, status, err := d.get(ctx, u)
	if err != nil {
		return fail(name, fix, "cannot fetch %s: %v", u, err)
	}
	if status != http.StatusOK {
		return fail(name, fix, "%s answered %d", u, status)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return fail(name, fix, "%s is not a JWK set: %v", u, err)
	}
	n := 0
	for _, k := range set.Keys {
		if k.Valid() && k.IsPublic() && (k.Use == "" || k.Use == "sig") {
			n++
		}
	}
	if n == 0 {
		return fail(name, fix, "%s holds no public signing key", u)
	}
	return pass(name, "%s holds %d signing key(s)", u, n)
}

// tokenEndpoint probes the token endpoint as the daemon authenticates to
// it, with an authorization code and a refresh token that do not exist:
// invalid_grant means the client's credentials and method were accepted,
// invalid_client that they were not. Both probes are needed: some
// providers (zitadel's OP among them) look the code up before they
// authenticate the client, so a wrong secret still gets invalid_grant for
// the code, but not for the refresh token.
func (d *doctor) tokenEndpoint(ctx context.Context, name, key string, p config.ProviderEnv, md providerMetadata) check {
	method := p.TokenEndpointAuthMethod
	if method == "" {
		method = "client_secret_basic"
	}
	if md.TokenEndpoint == "" {
		return fail(name, fmt.Sprintf("check the provider's token_endpoint (or %s.tokenUrl)", key), "the provider names no token endpoint")
	}
	callback := p.CallbackURL
	if callback == "" {
		callback = strings.TrimSuffix(d.cfg.Server.BaseURL, "/") + "/api/auth/" + server.ProviderID + "/handler/frame"
	}
	credentials := fmt.Sprintf("check %[1]s.clientId, %[1]s.clientSecret and %[1]s.tokenEndpointAuthMethod (now %[2]s", key, method)
	if len(md.TokenEndpointAuthMethods) > 0 {
		credentials += "; the provider advertises " + strings.Join(md.TokenEndpointAuthMethods, ", ")
	}
	credentials += ")"

	code, err := d.tokenProbe(ctx, md.TokenEndpoint, method, p, url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {"spectroauthd-doctor-" + randomString()},
		"redirect_uri":  {callback},
		"code_verifier": {randomString() + randomString()},
	})
	if err != nil {
		return fail(name, "check that this host reaches "+md.TokenEndpoint, "%v", err)
	}
	refresh, err := d.tokenProbe(ctx, md.TokenEndpoint, method, p, url.Values{
		"grant_type":    {"refresh_token"},
		"refresh_token": {"spectroauthd-doctor-" + randomString()},
	})
	if err != nil {
		return fail(name, "check that this host reaches "+md.TokenEndpoint, "%v", err)
	}
	for _, a := range []tokenAnswer{code, refresh} {
		switch {
		case a.refused():
			return fail(name, credentials, "the provider refused the client (%d %s to an invalid %s)", a.status, firstNonEmpty(a.Error, "no error code"), a.grant)
		case a.status == http.StatusOK:
			return fail(name, "check the token endpoint: it must refuse what it did not issue", "%s accepted an invalid %s", md.TokenEndpoint, a.grant)
		}
	}
	switch {
	case code.Error == "unauthorized_client":
		return fail(name, "allow the authorization_code grant for the client at the provider", "the client may not use the authorization code grant")
	case code.Error != "invalid_grant":
		return fail(name, credentials, "an invalid code came back %d %s, not invalid_grant: %s", code.status, firstNonEmpty(code.Error, "(no error code)"), bounded(code.Description, 200))
	case refresh.Error == "invalid_grant":
		return pass(name, "the client authenticates with %s (an invalid code and an invalid refresh token came back invalid_grant)", method)
	}
	return pass(name, "an invalid code came back invalid_grant (the client is not refused with %s; the refresh probe, %s, cannot confirm the secret)", method, firstNonEmpty(refresh.Error, fmt.Sprint(refresh.status)))
}

// tokenAnswer is the token endpoint's answer to a probe.
type tokenAnswer struct {
	grant       string
	status      int
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

// refused reports whether the provider refused the client's credentials.
func (a tokenAnswer) refused() bool {
	return a.Error == "invalid_client" || a.status == http.StatusUnauthorized
}

// tokenProbe posts form to the token endpoint, authenticated with method.
func (d *doctor) tokenProbe(ctx context.Context, endpoint, method string, p config.ProviderEnv, form url.Values) (tokenAnswer, error) {
	a := tokenAnswer{grant: strings.ReplaceAll(form.Get("grant_type"), "_", " ")}
	if method == "client_secret_post" {
		form.Set("client_id", p.ClientID)
		form.Set("client_secret", string(p.ClientSecret))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return a, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if method != "client_secret_post" {
		req.SetBasicAuth(url.QueryEscape(p.ClientID), url.QueryEscape(string(p.ClientSecret)))
	}
	body, _, status, err := d.do(req)
	if err != nil {
		return a, fmt.Errorf("cannot reach %s: %w", endpoint, err)
	}
	a.status = status
	_ = json.Unmarshal(body, &a)
	return a, nil
}

// clock compares this host's clock with the provider's Date header.
func (d *doctor) clock(ctx context.Context, name string, md providerMetadata, date string) check {
	if date == "" && md.JWKSURI != "" {
		_, hdr, _, err := d.get(ctx, md.JWKSURI)
		if err == nil {
			date = hdr.Get("Date")
		}
	}
	if date == "" {
		return pass(name, "not checked: the provider sends no Date header")
	}
	t, err := http.ParseTime(date)
	if err != nil {
		return pass(name, "not checked: the provider's Date header %q is not an HTTP date", bounded(date, 60))
	}
	skew := d.now().Sub(t)
	if math.Abs(skew.Seconds()) > maxClockSkew.Seconds() {
		return fail(name, "synchronise this host's clock (NTP); ID token times are checked against it",
			"this host's clock is %s off the provider's (more than %s)", skew.Round(time.Second), maxClockSkew)
	}
	return pass(name, "%s off the provider's Date header (at most %s allowed)", max(skew, -skew).Round(time.Second), maxClockSkew)
}

// storage checks that the file store's directory is writable, or that the
// database answers and has the daemon's schema.
func (d *doctor) storage(ctx context.Context) check {
	st := d.cfg.Storage
	switch st.Type {
	case "", "file":
		name := "storage (file)"
		fix := "make storage.path a directory the daemon's user may create and write"
		dir, err := filepath.Abs(st.Path)
		if err != nil {
			return fail(name, fix, "storage.path %q: %v", st.Path, err)
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fail(name, fix, "cannot create %s: %v", dir, err)
		}
		f, err := os.CreateTemp(dir, ".doctor-*")
		if err != nil {
			return fail(name, fix, "cannot write in %s: %v", dir, err)
		}
		_, err = f.WriteString("spectroauthd doctor\n")
		err = errors.Join(err, f.Sync(), f.Close(), os.Remove(f.Name()))
		if err != nil {
			return fail(name, fix, "cannot write in %s: %v", dir, err)
		}
		return pass(name, "%s is writable", dir)
	case "postgres":
		return d.postgres(ctx)
	}
	return fail("storage", "set storage.type to file or postgres", "storage.type %q is unknown", st.Type)
}

// postgres connects without migrating anything and reads the schema
// version. The connection string is never printed.
func (d *doctor) postgres(ctx context.Context) check {
	const name = "storage (postgres)"
	fix := "check storage.postgresUrl (host, port, database, user, password, sslmode) and that this host reaches the database"
	pc, err := pgx.ParseConfig(string(d.cfg.Storage.PostgresURL))
	if err != nil {
		return fail(name, fix, "storage.postgresUrl cannot be parsed (it is not shown: it may hold a password)")
	}
	scrub := func(err error) string {
		s := err.Error()
		if pc.Password != "" {
			s = strings.ReplaceAll(s, pc.Password, "[redacted]")
		}
		return s
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(cctx, pc)
	if err != nil {
		return fail(name, fix, "cannot connect: %s", scrub(err))
	}
	defer conn.Close(context.Background())
	var version int
	err = conn.QueryRow(cctx, `SELECT coalesce(max(version), 0) FROM spectroauth_schema_migrations`).Scan(&version)
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == "42P01": // undefined_table
		return fail(name, "start the daemon once (it creates the schema), or check that storage.postgresUrl names the right database",
			"the database answers, but holds no spectroauth schema")
	case err != nil:
		return fail(name, "grant the daemon's user SELECT on spectroauth_schema_migrations; "+fix, "cannot read the schema version: %s", scrub(err))
	}
	return pass(name, "the database answers; spectroauth schema version %d", version)
}

// plugins starts, describes and stops every plugin, as `spectroauthd
// plugins` does.
func (d *doctor) plugins(ctx context.Context, uses map[string][]pluginhost.Use) ([]check, map[string]pluginReport) {
	names := slices.Sorted(maps.Keys(d.cfg.Plugins))
	reports := make([]pluginReport, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() {
			reports[i] = inspectPlugin(ctx, name, d.cfg.Plugins[name], uses[name], pluginhost.Options{Logger: d.log})
		})
	}
	wg.Wait()
	var out []check
	byName := map[string]pluginReport{}
	for _, r := range reports {
		byName[r.name] = r
		name := "plugin " + r.name
		if r.err != nil {
			out = append(out, fail(name, "run spectroauthd plugins -config FILE for the details", "%v", r.err))
			continue
		}
		caps := make([]string, len(r.status.Capabilities))
		for i, c := range r.status.Capabilities {
			caps[i] = string(c)
		}
		sdkVersion := r.status.SDKVersion
		if sdkVersion == "" {
			sdkVersion = "unknown"
		}
		out = append(out, pass(name, "started and described: %s %s, SDK %s (%s); options of %d uses checked", r.status.PluginName, r.status.Version, sdkVersion, strings.Join(caps, ", "), r.uses))
	}
	return out, byName
}

// paletteSources lists the clusters of every source served by the
// palette-clusters plugin: the API key works, the projects it sees, how
// many clusters have OIDC.
func (d *doctor) paletteSources(ctx context.Context, reports map[string]pluginReport, uses map[string][]pluginhost.Use) []check {
	var out []check
	for i, src := range d.cfg.Kubernetes.Sources {
		r, ok := reports[src.Plugin]
		if !ok || r.err != nil || r.status.PluginName != palettePluginName {
			continue
		}
		name := fmt.Sprintf("Palette source kubernetes.sources[%d] (%s)", i, src.Plugin)
		out = append(out, d.paletteSource(ctx, name, src, uses[src.Plugin]))
	}
	return out
}

func (d *doctor) paletteSource(ctx context.Context, name string, src config.Source, uses []pluginhost.Use) check {
	h, err := pluginhost.Start(ctx, map[string]config.Plugin{src.Plugin: d.cfg.Plugins[src.Plugin]}, pluginhost.Options{Logger: d.log, Uses: uses})
	if err != nil {
		return fail(name, "run spectroauthd plugins -config FILE for the details", "the plugin does not start: %v", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = h.Close(cctx)
	}()
	cs, err := h.ClusterSource(src.Plugin, src.Options)
	if err != nil {
		return fail(name, "", "%v", err)
	}
	clusters, err := cs.ListClusters(ctx, sdk.ListClustersRequest{})
	var ce *sdk.ConfigError
	switch {
	case errors.As(err, &ce) && ce.Key == "apiKey":
		return fail(name, fmt.Sprintf("set plugins.%s.config.apiKey to a key of a Palette user who may list clusters and projects and read cluster kubeconfigs (see the README's Palette section)", src.Plugin),
			"Palette refused the API key")
	case err != nil && (errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "ran out of time")):
		return fail(name, fmt.Sprintf("raise plugins.%s.callTimeout: the first listing reads every cluster's kubeconfig, about 9 a second", src.Plugin), "listing the clusters took too long: %v", err)
	case err != nil:
		return fail(name, fmt.Sprintf("check plugins.%s.config.url and that this host reaches Palette", src.Plugin), "listing the clusters failed: %v", err)
	}
	projects := map[string]bool{}
	oidc, stale := 0, 0
	for _, c := range clusters {
		if p := c.Labels[paletteLabelProject]; p != "" {
			projects[p] = true
		}
		if c.Annotations[paletteAnnotationIssue] != "" {
			oidc++
		}
		if c.Annotations[paletteAnnotationStale] != "" {
			stale++
		}
	}
	seen := "no project"
	if len(projects) > 0 {
		seen = "projects " + strings.Join(slices.Sorted(maps.Keys(projects)), ", ")
	}
	if oidc == 0 {
		return fail(name, "configure OIDC on the clusters (Kubernetes pack: oidc.identityProvider: palette), or check includeProjects/excludeProjects and the key's projects",
			"the API key works, but no cluster it sees has OIDC configured (%d listed)", len(clusters))
	}
	msg := fmt.Sprintf("the API key works; %d clusters with OIDC in %s", oidc, seen)
	if stale > 0 {
		msg += fmt.Sprintf("; %d listed from an earlier reading", stale)
	}
	return pass(name, "%s", msg)
}

func randomString() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// bounded keeps a provider-supplied string short.
func bounded(s string, n int) string {
	s = oneLine(s)
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
