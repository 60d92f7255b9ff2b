package kube

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/spectroauth/spectroauth/host/identity"
	"github.com/spectroauth/spectroauth/host/internal/backstageerr"
	"github.com/spectroauth/spectroauth/host/lifecycle"
	"github.com/spectroauth/spectroauth/sdk"
)

// maxRequestBody bounds the credential request's body.
const maxRequestBody = 16 << 10

// maxMessage bounds a plugin's message quoted to the caller and the audit log.
const maxMessage = 300

func (b *Broker) routes() {
	b.mux = http.NewServeMux()
	b.mux.Handle("GET "+RoutePrefix+"clusters", b.api(b.clusters))
	b.mux.Handle("POST "+RoutePrefix+"credential", b.api(b.credential))
	b.mux.Handle("GET "+RoutePrefix+"catalog-info.yaml", b.api(b.catalog))
	b.mux.Handle(RoutePrefix, b.api(func(w http.ResponseWriter, r *http.Request) error {
		return backstageerr.NotFound("Not found")
	}))
}

// api adapts a handler that returns an error, answering Backstage's error body.
func (b *Broker) api(h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			b.writeError(w, r, err)
		}
	})
}

// WrongTokenMessage is what POST credential answers a Backstage user token.
const WrongTokenMessage = "A Backstage user token does not buy a cluster credential: Backstage hands it to every backend plugin. " +
	"kubectl gets credentials with `spectroauthd kube-credential`, which holds its own command-line token; " +
	"Backstage's Kubernetes plugin gets them through its own auth provider (see the README's Kubernetes section)"

// session authenticates the caller: for a credential (credential true) as
// lifecycle.CredentialCallers does (a command-line access token or the
// browser's session cookie), otherwise with a command-line access token or
// a Backstage user token. Its errors carry the audit reason.
func (b *Broker) session(r *http.Request, credential bool) (*lifecycle.UserSession, error) {
	if credential {
		us, err := lifecycle.CredentialCallers{CLISessions: b.cfg.CLISessions, BrowserSessions: b.cfg.BrowserSessions}.Authenticate(r)
		switch {
		case errors.Is(err, lifecycle.ErrNoCredential):
			return nil, refusal(http.StatusUnauthorized, backstageerr.NameAuthentication, ReasonUnauthenticated,
				"Missing token: send Authorization: Bearer <command-line access token>, as `spectroauthd kube-credential` does; sign in again to get one", nil)
		case errors.Is(err, lifecycle.ErrBackstageToken):
			return nil, refusal(http.StatusUnauthorized, backstageerr.NameAuthentication, ReasonWrongToken, WrongTokenMessage, nil)
		case errors.Is(err, lifecycle.ErrNotCLIToken):
			return nil, refusal(http.StatusUnauthorized, backstageerr.NameAuthentication, ReasonUnauthenticated,
				"Invalid token: send a command-line access token, as `spectroauthd kube-credential` does", nil)
		}
		return b.sessionResult(us, err)
	}
	token := lifecycle.BearerToken(r)
	if token == "" {
		return nil, refusal(http.StatusUnauthorized, backstageerr.NameAuthentication, ReasonUnauthenticated,
			"Missing token: send Authorization: Bearer <your Backstage token>; sign in again to get one", nil)
	}
	sessions := b.cfg.Sessions
	if identity.TokenType(token) == identity.TypeCLIAccess {
		sessions = b.cfg.CLISessions
	}
	if sessions == nil {
		return nil, refusal(http.StatusUnauthorized, backstageerr.NameAuthentication, ReasonUnauthenticated,
			"Invalid token: send a command-line access token, as `spectroauthd kube-credential` does", nil)
	}
	return b.sessionResult(sessions(r.Context(), token))
}

// sessionResult turns a session function's error into the refusal to answer.
func (b *Broker) sessionResult(us *lifecycle.UserSession, err error) (*lifecycle.UserSession, error) {
	switch {
	case err == nil:
		return us, nil
	case errors.Is(err, lifecycle.ErrUnauthenticated):
		return nil, refusal(http.StatusUnauthorized, backstageerr.NameAuthentication, ReasonUnauthenticated,
			"Invalid token: it is expired, malformed or not issued by this daemon; sign in again", err)
	case errors.Is(err, lifecycle.ErrSessionEnded):
		return nil, refusal(http.StatusUnauthorized, backstageerr.NameAuthentication, ReasonSessionEnded,
			"Your SpectroCloud session has ended (signed out, expired, or refused by SpectroCloud); sign in again", err)
	default:
		return nil, refusal(http.StatusServiceUnavailable, backstageerr.NameServiceUnavailable, ReasonSessionUnavailable,
			"Your session could not be read or refreshed right now; try again shortly", err)
	}
}

// clusterJSON is one cluster of GET clusters.
type clusterJSON struct {
	Name        string            `json:"name"`
	Title       string            `json:"title,omitempty"`
	Description string            `json:"description,omitempty"`
	Server      string            `json:"server"`
	CAData      string            `json:"caData,omitempty"`
	Strategy    string            `json:"strategy"`
	Origin      string            `json:"origin"`
	Labels      map[string]string `json:"labels,omitempty"`
}

// clusters answers GET clusters: the clusters the caller may ask a
// credential for (those with a strategy), sorted by name. caData is the
// base64 of the PEM bundle, as in a kubeconfig.
func (b *Broker) clusters(w http.ResponseWriter, r *http.Request) error {
	if _, err := b.session(r, false); err != nil {
		return err
	}
	out := []clusterJSON{}
	for _, c := range b.Clusters() {
		if c.Strategy == "" {
			continue
		}
		j := clusterJSON{
			Name: c.Name, Title: c.Title, Description: c.Description, Server: c.Server,
			Strategy: c.Strategy, Origin: c.Origin, Labels: c.Labels,
		}
		if len(c.CAData) > 0 {
			j.CAData = base64.StdEncoding.EncodeToString(c.CAData)
		}
		out = append(out, j)
	}
	backstageerr.WriteJSON(w, http.StatusOK, map[string]any{"clusters": out})
	return nil
}

// credentialRequest is the body of POST credential.
type credentialRequest struct {
	Cluster string `json:"cluster"`
}

// credentialResponse is the answer of POST credential.
type credentialResponse struct {
	Token string `json:"token,omitempty"`
	// ExpiresAt is RFC 3339; absent when the strategy does not know.
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
	// ClientCertificateData and ClientKeyData are PEM, for strategies that
	// issue client certificates.
	ClientCertificateData string `json:"clientCertificateData,omitempty"`
	ClientKeyData         string `json:"clientKeyData,omitempty"`
}

func (b *Broker) decided(outcome, reason string) {
	if b.cfg.Decided != nil {
		b.cfg.Decided(outcome, reason)
	}
}

// credential answers POST credential. Every outcome is audited; a grant
// whose audit line cannot be written is refused.
func (b *Broker) credential(w http.ResponseWriter, r *http.Request) error {
	ev := AuditEvent{Remote: r.RemoteAddr}
	cred, err := b.issue(r, &ev)
	ev.Time = b.now()
	if err != nil {
		ae := backstageerr.As(err)
		ev.Outcome, ev.Reason, ev.Message = OutcomeRefused, auditReason(err), ae.Message
		if aerr := b.cfg.Audit.Record(ev); aerr != nil {
			b.log.Error("could not write the audit log", "error", aerr)
		}
		b.decided(OutcomeRefused, ev.Reason)
		return err
	}
	ev.Outcome = OutcomeGranted
	res := credentialResponse{
		Token:                 cred.Token,
		ClientCertificateData: string(cred.ClientCertificatePEM),
		ClientKeyData:         string(cred.ClientKeyPEM),
	}
	if !cred.ExpiresAt.IsZero() {
		exp := cred.ExpiresAt.UTC()
		ev.ExpiresAt, res.ExpiresAt = &exp, &exp
	}
	if err := b.cfg.Audit.Record(ev); err != nil {
		b.decided(OutcomeRefused, ReasonInternalError)
		return fmt.Errorf("auditing a grant (the credential was withheld): %w", err)
	}
	b.decided(OutcomeGranted, "")
	b.log.Info("kubernetes credential granted", "user", ev.User, "cluster", ev.Cluster, "strategy", ev.Strategy)
	backstageerr.WriteJSON(w, http.StatusOK, res)
	return nil
}

// issue authenticates the caller and asks the cluster's strategy, filling ev
// as it learns who and what.
func (b *Broker) issue(r *http.Request, ev *AuditEvent) (sdk.Credential, error) {
	var cred sdk.Credential
	us, err := b.session(r, true)
	if err != nil {
		return cred, err
	}
	ev.User, ev.Env = us.Session.UserEntityRef, us.Env
	if us.Tokens != nil {
		ev.Subject = us.Tokens.Profile.Subject
	}

	var req credentialRequest
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxRequestBody))
	if err != nil {
		return cred, refusal(http.StatusBadRequest, backstageerr.NameInput, ReasonBadRequest, "The request body is too large or unreadable", err)
	}
	if err := json.Unmarshal(body, &req); err != nil || req.Cluster == "" {
		return cred, refusal(http.StatusBadRequest, backstageerr.NameInput, ReasonBadRequest, `The request body must be JSON {"cluster": "<name>"}`, err)
	}
	ev.Cluster = truncate(req.Cluster, 253)

	e, ok := b.reg.load().byName[req.Cluster]
	if !ok {
		return cred, refusal(http.StatusNotFound, backstageerr.NameNotFound, ReasonUnknownCluster,
			fmt.Sprintf("Unknown cluster '%s'", ev.Cluster), nil)
	}
	if e.strategy == nil {
		return cred, refusal(http.StatusNotFound, backstageerr.NameNotFound, ReasonNoStrategy,
			fmt.Sprintf("Cluster '%s' has no credential strategy: it issues no credentials here", e.cluster.Name), nil)
	}
	ev.Strategy = e.strategy.Name()
	ctx, cancel := context.WithTimeout(r.Context(), b.cfg.CredentialTimeout)
	defer cancel()
	if us, err = b.freshPaletteToken(ctx, e.strategy, us); err != nil {
		return cred, err
	}
	cred, err = e.strategy.Impl.Credential(ctx, sdk.CredentialRequest{
		Strategy: e.strategy.Strategy,
		Options:  e.strategy.Options,
		Cluster:  e.cluster,
		Session:  sdkSession(us),
	})
	if err == nil {
		if verr := cred.Validate(); verr != nil {
			err = fmt.Errorf("the strategy returned an invalid credential: %w", verr)
		}
	}
	if err != nil {
		return sdk.Credential{}, b.strategyError(e, err)
	}
	return cred, nil
}

// freshPaletteToken renews the session's Palette session token before a
// strategy that receives it is called (Palette's tokens live 15 minutes).
// A refused renewal drops the token (the strategy then gets none); a
// renewal that could not be made is a failure of the daemon's upstream.
func (b *Broker) freshPaletteToken(ctx context.Context, s *StrategyBinding, us *lifecycle.UserSession) (*lifecycle.UserSession, error) {
	tr, ok := s.Impl.(TokenReceiver)
	if b.cfg.RenewPaletteToken == nil || !ok || !tr.Receives(sdk.TokenPaletteSession) ||
		us.Tokens == nil || us.Tokens.PaletteSessionToken == "" {
		return us, nil
	}
	renewed, err := b.cfg.RenewPaletteToken(ctx, us)
	if err != nil {
		b.log.Error("renewing the Palette session token failed", "strategy", s.Name(), "error", err)
		return nil, refusal(http.StatusBadGateway, backstageerr.NameError, ReasonStrategyFailed,
			"Your Palette session could not be renewed right now; try again shortly", err)
	}
	return renewed, nil
}

// strategyError classifies a strategy's error: a refusal the user should
// read (403), or a failure of the plugin or its upstream (502).
func (b *Broker) strategyError(e *entry, err error) error {
	name, cluster := e.strategy.Name(), e.cluster.Name
	var ie *sdk.InvalidInputError
	var ce *sdk.ConfigError
	switch {
	case errors.Is(err, sdk.ErrNotFound) || errors.As(err, &ie):
		return refusal(http.StatusForbidden, backstageerr.NameNotAllowed, ReasonRefused,
			fmt.Sprintf("Cluster '%s' issues no credential to you: %s", cluster, truncate(err.Error(), maxMessage)), err)
	case errors.As(err, &ce):
		b.log.Error("cluster strategy is misconfigured", "cluster", cluster, "strategy", name, "error", err)
		return refusal(http.StatusBadGateway, backstageerr.NameError, ReasonStrategyMisconfigured,
			fmt.Sprintf("The credential strategy %s of cluster '%s' is misconfigured (%s); an operator must fix it", name, cluster, truncate(ce.Error(), maxMessage)), err)
	case errors.Is(err, context.DeadlineExceeded):
		b.log.Error("cluster strategy timed out", "cluster", cluster, "strategy", name, "error", err)
		return refusal(http.StatusBadGateway, backstageerr.NameError, ReasonStrategyFailed,
			fmt.Sprintf("The credential strategy %s of cluster '%s' timed out; try again shortly", name, cluster), err)
	default:
		b.log.Error("cluster strategy failed", "cluster", cluster, "strategy", name, "error", err)
		return refusal(http.StatusBadGateway, backstageerr.NameError, ReasonStrategyFailed,
			fmt.Sprintf("The credential strategy %s of cluster '%s' failed; the daemon's log has the details", name, cluster), err)
	}
}

// sdkSession is what a strategy learns of the user: the upstream tokens the
// daemon refreshed within the margin.
func sdkSession(us *lifecycle.UserSession) sdk.Session {
	s := sdk.Session{UserEntityRef: us.Session.UserEntityRef}
	if t := us.Tokens; t != nil {
		s.Subject = t.Profile.Subject
		s.IDToken = t.IDToken
		s.IDTokenExpiresAt = t.IDTokenExpiry
		s.AccessToken = t.AccessToken
		s.PaletteSessionToken = t.PaletteSessionToken
		s.Claims = sdk.Claims(t.Claims)
	}
	return s
}

// catalog answers GET catalog-info.yaml.
func (b *Broker) catalog(w http.ResponseWriter, r *http.Request) error {
	if !b.cfg.CatalogPublic {
		if _, err := b.session(r, false); err != nil {
			return err
		}
	}
	out, err := catalogYAML(b.Clusters(), b.cfg.CatalogOwner)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/yaml; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(out)
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
