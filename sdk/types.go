package sdk

import (
	"fmt"
	"time"
)

// Profile is the signed-in user's profile as Backstage shows it.
type Profile struct {
	// Email is the e-mail address, when known.
	Email string
	// DisplayName is the name to display.
	DisplayName string
	// Picture is a URL of the user's picture.
	Picture string
	// EmailVerified reports whether the upstream provider verified Email.
	EmailVerified bool
}

// ResolveRequest describes a user who has just signed in upstream, for a
// Resolver.
type ResolveRequest struct {
	// Resolver is which of the plugin's resolvers to run; the SDK has
	// checked that it is one that Resolvers lists.
	Resolver string
	// Options are the resolver's `options:` from the daemon's
	// configuration.
	Options Options
	// Claims are all claims of the verified upstream ID token.
	Claims Claims
	// Profile is the user's profile, taken from the claims.
	Profile Profile
	// Subject is the ID token's "sub" claim.
	Subject string
	// Issuer is the ID token's "iss" claim.
	Issuer string
	// PreferredUsername is the ID token's "preferred_username" claim, when
	// present.
	PreferredUsername string
	// Groups is the ID token's "groups" claim, when present.
	Groups []string
}

// Identity is a Backstage user identity, what a Resolver finds.
type Identity struct {
	// UserEntityRef is the user's entity ref in canonical form, kind user:
	// "user:default/jdoe". Build it with EntityRef.String.
	UserEntityRef string
	// OwnershipEntityRefs are the refs the user owns through: usually the
	// user's own ref and their groups' refs, in canonical form. At most
	// MaxOwnershipEntityRefs.
	OwnershipEntityRefs []string
	// Extra holds extra claims for the Backstage identity token; it may not
	// set the token's own claims (see Validate). JSON-encoded, at most
	// MaxExtraClaimsSize bytes.
	Extra map[string]any
}

// Session is what the daemon knows of a signed-in user, for a
// ClusterStrategy. It holds secrets: its String method hides them, but do not
// log its fields.
type Session struct {
	// UserEntityRef is the user's Backstage entity ref.
	UserEntityRef string
	// Subject is the upstream "sub" claim.
	Subject string
	// IDToken is the upstream ID token (a JWT), as received.
	IDToken string
	// IDTokenExpiresAt is when IDToken expires.
	IDTokenExpiresAt time.Time
	// AccessToken is the upstream access token.
	AccessToken string
	// PaletteSessionToken is the Palette API session token, when the daemon
	// has one.
	PaletteSessionToken string
	// Claims are the upstream ID token's claims.
	Claims Claims
}

// String describes the session without its secrets.
func (s Session) String() string {
	return fmt.Sprintf("Session{UserEntityRef:%q Subject:%q IDToken:%s IDTokenExpiresAt:%s AccessToken:%s PaletteSessionToken:%s}",
		s.UserEntityRef, s.Subject, redacted(s.IDToken), s.IDTokenExpiresAt.Format(time.RFC3339),
		redacted(s.AccessToken), redacted(s.PaletteSessionToken))
}

// GoString is String, so that %#v hides the secrets too.
func (s Session) GoString() string { return s.String() }

// CredentialRequest asks a ClusterStrategy for a user's credential for a
// cluster.
type CredentialRequest struct {
	// Strategy is which of the plugin's strategies to run; the SDK has
	// checked that it is one that Strategies lists.
	Strategy string
	// Options are the strategy's `options:` from the daemon's
	// configuration.
	Options Options
	// Cluster is the cluster.
	Cluster Cluster
	// Session is the user.
	Session Session
}

// Credential is a Kubernetes client credential.
type Credential struct {
	// Token is a bearer token. Required unless ClientCertificatePEM is set.
	Token string
	// ExpiresAt is when the credential stops working; zero when unknown.
	ExpiresAt time.Time
	// ClientCertificatePEM is a PEM client certificate, for strategies that
	// issue one; set together with ClientKeyPEM.
	ClientCertificatePEM []byte
	// ClientKeyPEM is the PEM private key of ClientCertificatePEM.
	ClientKeyPEM []byte
}

// String describes the credential without its secrets.
func (c Credential) String() string {
	exp := "unknown"
	if !c.ExpiresAt.IsZero() {
		exp = c.ExpiresAt.Format(time.RFC3339)
	}
	return fmt.Sprintf("Credential{Token:%s ExpiresAt:%s ClientCertificate:%t}",
		redacted(c.Token), exp, len(c.ClientCertificatePEM) > 0)
}

// GoString is String, so that %#v hides the secrets too.
func (c Credential) GoString() string { return c.String() }

func redacted(secret string) string {
	if secret == "" {
		return `""`
	}
	return "[redacted]"
}

// Cluster is a Kubernetes cluster.
type Cluster struct {
	// Name is a unique, stable name: letters, digits, '.', '_' and '-'.
	Name string
	// Server is the API server's https URL.
	Server string
	// CAData holds PEM certificates to trust for Server; empty means the
	// system roots.
	CAData []byte
	// Strategy, from a ClusterSource, hints which strategy should issue
	// credentials for the cluster; empty when the source has no opinion.
	Strategy string
	// Labels are for selecting clusters.
	Labels map[string]string
	// Annotations are free-form metadata.
	Annotations map[string]string
	// Title is a human-readable title.
	Title string
	// Description is a human-readable description.
	Description string
}

// ListClustersRequest asks a ClusterSource for its clusters.
type ListClustersRequest struct {
	// Options are the source's `options:` from the daemon's configuration.
	Options Options
}

// Config is a plugin's configuration, for a Configurer.
type Config struct {
	// InstanceName is the name the daemon's configuration gives the plugin
	// (its key under `plugins:`), for messages and logs.
	InstanceName string
	// Values is the plugin's `config:` block; empty when there is none.
	Values Options
}

// ValidateOptionsRequest asks an OptionsValidator to check options.
type ValidateOptionsRequest struct {
	// Role says whose options: CapabilityResolver, CapabilityClusterStrategy
	// or CapabilityClusterSource.
	Role Capability
	// Name is the resolver or strategy name; empty for a cluster source.
	Name string
	// Options are the options, as written in the daemon's configuration.
	Options Options
}
