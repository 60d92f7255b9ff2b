package sdk

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"
)

// testCertificate returns a fresh self-signed certificate and its key, PEM.
func testCertificate(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
}

func checkValidation(t *testing.T, err error, wantErr string) {
	t.Helper()
	switch {
	case wantErr == "" && err != nil:
		t.Fatalf("got %v, want valid", err)
	case wantErr != "" && (err == nil || !strings.Contains(err.Error(), wantErr)):
		t.Fatalf("got %v, want an error containing %q", err, wantErr)
	}
}

func TestIdentityValidate(t *testing.T) {
	many := make([]string, MaxOwnershipEntityRefs+1)
	for i := range many {
		many[i] = fmt.Sprintf("group:default/g%d", i)
	}
	tests := []struct {
		name    string
		id      Identity
		wantErr string
	}{
		{name: "minimal", id: Identity{UserEntityRef: "user:default/jdoe"}},
		{name: "full", id: Identity{
			UserEntityRef:       "user:default/JDoe",
			OwnershipEntityRefs: []string{"user:default/JDoe", "group:team-ns/a"},
			Extra:               map[string]any{"teams": []string{"a"}, "n": 1},
		}},
		{name: "max ownership", id: Identity{UserEntityRef: "user:default/a", OwnershipEntityRefs: many[:MaxOwnershipEntityRefs]}},
		{name: "empty", id: Identity{}, wantErr: "UserEntityRef is empty"},
		{name: "not a user", id: Identity{UserEntityRef: "group:default/a"}, wantErr: `kind "group", want "user"`},
		{name: "kind not lower case", id: Identity{UserEntityRef: "User:default/a"}, wantErr: "not in canonical form"},
		{name: "short form", id: Identity{UserEntityRef: "jdoe"}, wantErr: "has no kind"},
		{name: "bad ownership ref", id: Identity{UserEntityRef: "user:default/a", OwnershipEntityRefs: []string{"group:default/ok", "team a"}}, wantErr: "OwnershipEntityRefs[1]"},
		{name: "duplicate ownership ref", id: Identity{UserEntityRef: "user:default/a", OwnershipEntityRefs: []string{"user:default/a", "user:default/a"}}, wantErr: "listed twice"},
		{name: "too many ownership refs", id: Identity{UserEntityRef: "user:default/a", OwnershipEntityRefs: many}, wantErr: "more than 64"},
		{name: "reserved claim", id: Identity{UserEntityRef: "user:default/a", Extra: map[string]any{"sub": "x"}}, wantErr: `reserved claim "sub"`},
		{name: "reserved obo", id: Identity{UserEntityRef: "user:default/a", Extra: map[string]any{"obo": "x"}}, wantErr: `reserved claim "obo"`},
		{name: "reserved act", id: Identity{UserEntityRef: "user:default/a", Extra: map[string]any{"act": map[string]any{"sub": "x"}}}, wantErr: `reserved claim "act"`},
		{name: "reserved azp", id: Identity{UserEntityRef: "user:default/a", Extra: map[string]any{"azp": "x"}}, wantErr: `reserved claim "azp"`},
		{name: "reserved sid", id: Identity{UserEntityRef: "user:default/a", Extra: map[string]any{"sid": "x"}}, wantErr: `reserved claim "sid"`},
		{name: "huge extra", id: Identity{UserEntityRef: "user:default/a", Extra: map[string]any{"x": strings.Repeat("a", MaxExtraClaimsSize)}}, wantErr: "bytes of JSON"},
		{name: "extra not JSON", id: Identity{UserEntityRef: "user:default/a", Extra: map[string]any{"f": func() {}}}, wantErr: "not representable as JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkValidation(t, tt.id.Validate(), tt.wantErr) })
	}
}

func TestCredentialValidate(t *testing.T) {
	cert, key := testCertificate(t)
	tests := []struct {
		name    string
		c       Credential
		wantErr string
	}{
		{name: "token", c: Credential{Token: "eyJ.abc.def", ExpiresAt: time.Now()}},
		{name: "client certificate", c: Credential{ClientCertificatePEM: cert, ClientKeyPEM: key}},
		{name: "empty", c: Credential{}, wantErr: "neither Token nor ClientCertificatePEM"},
		{name: "space in token", c: Credential{Token: "Bearer abc"}, wantErr: "printable ASCII"},
		{name: "newline in token", c: Credential{Token: "abc\n"}, wantErr: "printable ASCII"},
		{name: "huge token", c: Credential{Token: strings.Repeat("a", MaxTokenLength+1)}, wantErr: "more than 65536"},
		{name: "certificate without key", c: Credential{ClientCertificatePEM: cert}, wantErr: "set together"},
		{name: "key as certificate", c: Credential{ClientCertificatePEM: key, ClientKeyPEM: key}, wantErr: "not a PEM certificate"},
		{name: "garbage key", c: Credential{ClientCertificatePEM: cert, ClientKeyPEM: []byte("nope")}, wantErr: "not a PEM private key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkValidation(t, tt.c.Validate(), tt.wantErr) })
	}
	if s := fmt.Sprintf("%v %+v %#v", tests[0].c, tests[0].c, tests[0].c); strings.Contains(s, "eyJ") {
		t.Errorf("formatting a Credential shows its token: %s", s)
	}
	sess := Session{IDToken: "eyJ.id", AccessToken: "at", PaletteSessionToken: "pst"}
	if s := fmt.Sprintf("%v %+v %#v", sess, sess, sess); strings.Contains(s, "eyJ") || strings.Contains(s, "pst") || strings.Contains(s, ":at") {
		t.Errorf("formatting a Session shows its tokens: %s", s)
	}
}

func TestClusterValidate(t *testing.T) {
	cert, key := testCertificate(t)
	ok := Cluster{Name: "dev-1.eu_west", Server: "https://10.0.0.1:6443", CAData: append(append([]byte{}, cert...), cert...), Strategy: "idToken", Labels: map[string]string{"env": "dev"}}
	with := func(f func(*Cluster)) Cluster {
		c := ok
		f(&c)
		return c
	}
	tests := []struct {
		name    string
		c       Cluster
		wantErr string
	}{
		{name: "valid", c: ok},
		{name: "no CA", c: with(func(c *Cluster) { c.CAData = nil })},
		{name: "empty name", c: with(func(c *Cluster) { c.Name = "" }), wantErr: "Name"},
		{name: "name with space", c: with(func(c *Cluster) { c.Name = "my cluster" }), wantErr: "Name"},
		{name: "name with slash", c: with(func(c *Cluster) { c.Name = "a/b" }), wantErr: "Name"},
		{name: "http", c: with(func(c *Cluster) { c.Server = "http://10.0.0.1:6443" }), wantErr: "not an https URL"},
		{name: "no host", c: with(func(c *Cluster) { c.Server = "https:///x" }), wantErr: "not an https URL"},
		{name: "credentials in URL", c: with(func(c *Cluster) { c.Server = "https://u:p@h" }), wantErr: "not an https URL"},
		{name: "CA garbage", c: with(func(c *Cluster) { c.CAData = []byte("hello") }), wantErr: "CAData"},
		{name: "CA trailing garbage", c: with(func(c *Cluster) { c.CAData = append(append([]byte{}, cert...), "junk"...) }), wantErr: "not PEM"},
		{name: "CA is a key", c: with(func(c *Cluster) { c.CAData = key }), wantErr: "not CERTIFICATE"},
		{name: "bad strategy", c: with(func(c *Cluster) { c.Strategy = "no such!" }), wantErr: "Strategy"},
		{name: "empty label key", c: with(func(c *Cluster) { c.Labels = map[string]string{"": "x"} }), wantErr: "Labels"},
		{name: "long description", c: with(func(c *Cluster) { c.Description = strings.Repeat("d", 5000) }), wantErr: "Description"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkValidation(t, tt.c.Validate(), tt.wantErr) })
	}

	checkValidation(t, ValidateClusters([]Cluster{ok, with(func(c *Cluster) { c.Name = "prod" })}), "")
	checkValidation(t, ValidateClusters([]Cluster{ok, ok}), "listed twice")
	checkValidation(t, ValidateClusters(make([]Cluster, MaxClusters+1)), "more than 10000")
}

type onlyResolver struct{}

func (onlyResolver) Resolvers() []string { return []string{"a", "b"} }
func (onlyResolver) Resolve(context.Context, ResolveRequest) (Identity, error) {
	return Identity{}, ErrNotFound
}

type namedResolver []string

func (n namedResolver) Resolvers() []string { return n }
func (namedResolver) Resolve(context.Context, ResolveRequest) (Identity, error) {
	return Identity{}, ErrNotFound
}

type everything struct{ onlyResolver }

func (everything) Strategies() []string { return []string{"s"} }
func (everything) Credential(context.Context, CredentialRequest) (Credential, error) {
	return Credential{}, ErrNotFound
}
func (everything) ListClusters(context.Context, ListClustersRequest) ([]Cluster, error) {
	return nil, nil
}
func (everything) Configure(context.Context, Config) error { return nil }
func (everything) ValidateOptions(context.Context, ValidateOptionsRequest) error {
	return nil
}

// wrongSignature resolves, and has a ValidateOptions that is not
// OptionsValidator's: with Impl, the capability would silently be missing.
type wrongSignature struct{ onlyResolver }

func (wrongSignature) ValidateOptions(context.Context, Options) error { return nil }

type pointerResolver struct{}

func (*pointerResolver) Resolvers() []string { return []string{"r"} }
func (*pointerResolver) Resolve(context.Context, ResolveRequest) (Identity, error) {
	return Identity{}, ErrNotFound
}

func TestPluginInfo(t *testing.T) {
	tests := []struct {
		name     string
		p        Plugin
		wantCaps []Capability
		wantErr  string
	}{
		{name: "resolver", p: Plugin{Name: "r", Version: "1", Impl: onlyResolver{}}, wantCaps: []Capability{CapabilityResolver}},
		{name: "everything", p: Plugin{Name: "all", Impl: everything{}}, wantCaps: []Capability{
			CapabilityResolver, CapabilityClusterStrategy, CapabilityClusterSource, CapabilityConfigure, CapabilityValidateOptions,
		}},
		{name: "no role", p: Plugin{Name: "x", Impl: struct{}{}}, wantErr: "offers none of"},
		{name: "nil impl", p: Plugin{Name: "x"}, wantErr: "offers none of"},
		{name: "bad plugin name", p: Plugin{Name: "my plugin", Impl: onlyResolver{}}, wantErr: "plugin name"},
		{name: "empty plugin name", p: Plugin{Impl: onlyResolver{}}, wantErr: "plugin name"},
		{name: "no resolver names", p: Plugin{Name: "x", Impl: namedResolver{}}, wantErr: "lists no resolver names"},
		{name: "bad resolver name", p: Plugin{Name: "x", Impl: namedResolver{"a b"}}, wantErr: `resolver name "a b"`},
		{name: "duplicate resolver name", p: Plugin{Name: "x", Impl: namedResolver{"a", "a"}}, wantErr: "listed twice"},
		{name: "typed", p: Plugin{Name: "t", Resolver: onlyResolver{}, OptionsValidator: everything{}}, wantCaps: []Capability{
			CapabilityResolver, CapabilityValidateOptions,
		}},
		{name: "typed and impl", p: Plugin{Name: "t", ClusterSource: everything{}, Impl: onlyResolver{}}, wantCaps: []Capability{
			CapabilityResolver, CapabilityClusterSource,
		}},
		{name: "impl with a wrong signature", p: Plugin{Name: "x", Impl: wrongSignature{}},
			wantErr: "has method ValidateOptions(context.Context, sdk.Options) error, but sdk.OptionsValidator needs ValidateOptions(context.Context, sdk.ValidateOptionsRequest) error"},
		{name: "tokens of a strategy not listed", p: Plugin{Name: "x", Impl: everything{}, StrategyTokens: map[string][]Token{"nope": {TokenID}}},
			wantErr: `declares the tokens of strategy "nope", which it does not list`},
		{name: "unknown token", p: Plugin{Name: "x", Impl: everything{}, StrategyTokens: map[string][]Token{"s": {"REFRESH"}}},
			wantErr: `declares token "REFRESH"`},
		{name: "impl on its pointer only", p: Plugin{Name: "x", Impl: pointerResolver{}}, wantErr: "implements sdk.Resolver only on its pointer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info, err := tt.p.Info()
			checkValidation(t, err, tt.wantErr)
			if tt.wantErr != "" {
				return
			}
			if fmt.Sprint(info.Capabilities) != fmt.Sprint(tt.wantCaps) {
				t.Errorf("Capabilities = %v, want %v", info.Capabilities, tt.wantCaps)
			}
			if info.Version == "" || info.ProtocolVersion != ProtocolVersion || info.SDKVersion != Version || info.Name != tt.p.Name {
				t.Errorf("Info = %+v", info)
			}
		})
	}
	// Every version the SDK speaks is valid, not only the newest: a
	// description of version 1 stays valid once version 2 is added.
	for _, v := range ProtocolVersions() {
		if err := (Info{Name: "x", ProtocolVersion: v, Capabilities: []Capability{CapabilityClusterSource}}).Validate(); err != nil {
			t.Errorf("Validate of a version %d description = %v", v, err)
		}
	}
	if !slices.Contains(ProtocolVersions(), ProtocolVersion) || !slices.IsSorted(ProtocolVersions()) {
		t.Errorf("ProtocolVersions() = %v: want ProtocolVersion %d among them, oldest first", ProtocolVersions(), ProtocolVersion)
	}
	for _, v := range []int{0, ProtocolVersion + 1} {
		err := (Info{Name: "x", ProtocolVersion: v, Capabilities: []Capability{CapabilityClusterSource}}).Validate()
		if want := fmt.Sprintf("protocol version %d", v); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate of a version %d description = %v, want an error with %q", v, err, want)
		}
	}
	if err := (Info{Name: "x", ProtocolVersion: 1, Capabilities: []Capability{CapabilityClusterSource}, Resolvers: []string{"a"}}).Validate(); err == nil {
		t.Error("Validate accepted resolver names without the resolver role")
	}
}

// TestReservedClaims checks the one list host and SDK share: the identity
// token's own claims and those a consumer acts on.
func TestReservedClaims(t *testing.T) {
	for _, c := range []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "ent", "uip", "typ", "sid", "azp", "act", "obo"} {
		if !IsReservedClaim(c) {
			t.Errorf("IsReservedClaim(%q) = false", c)
		}
	}
	for _, c := range []string{"email", "groups", "teams", ""} {
		if IsReservedClaim(c) {
			t.Errorf("IsReservedClaim(%q) = true", c)
		}
	}
	list := ReservedClaims()
	list[0] = "changed"
	if !IsReservedClaim("iss") {
		t.Error("changing the result of ReservedClaims changed the list")
	}
}
