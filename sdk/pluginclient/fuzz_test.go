package pluginclient

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/spectroauth/spectroauth/sdk"
	pluginv1 "github.com/spectroauth/spectroauth/sdk/internal/pluginv1"
	"github.com/spectroauth/spectroauth/sdk/internal/wire"
)

// wireConn is a plugin connection whose answers are raw protobuf bytes (or
// a raw google.rpc.Status): whatever a broken or hostile plugin could put
// on the wire. Describe always answers with a plugin that offers everything.
type wireConn struct {
	reply, st []byte
	fail      bool
}

var _ grpc.ClientConnInterface = wireConn{}

func (c wireConn) Invoke(_ context.Context, method string, _, reply any, _ ...grpc.CallOption) error {
	if strings.HasSuffix(method, "/Describe") {
		proto.Merge(reply.(proto.Message), &pluginv1.DescribeResponse{
			Name: "fuzz", Version: "1", ProtocolVersion: sdk.ProtocolVersion,
			Capabilities: []pluginv1.Capability{pluginv1.Capability_CAPABILITY_RESOLVER, pluginv1.Capability_CAPABILITY_CLUSTER_STRATEGY, pluginv1.Capability_CAPABILITY_CLUSTER_SOURCE},
			Resolvers:    []string{"r"},
			Strategies:   []string{"s"},
		})
		return nil
	}
	if c.fail {
		var st spb.Status
		if err := proto.Unmarshal(c.st, &st); err != nil || st.Code == 0 {
			st.Code = int32(codes.Unknown)
		}
		return status.ErrorProto(&st)
	}
	if err := proto.Unmarshal(c.reply, reply.(proto.Message)); err != nil {
		// What grpc's codec makes of bytes that do not parse.
		return status.Errorf(codes.Internal, "grpc: failed to unmarshal the received message: %v", err)
	}
	return nil
}

func (wireConn) NewStream(context.Context, *grpc.StreamDesc, string, ...grpc.CallOption) (grpc.ClientStream, error) {
	return nil, errors.New("no streams")
}

// maxRefusal bounds what a refused answer may put into the daemon's log.
const maxRefusal = 4 * wire.MaxErrorMessage

// FuzzPluginResponses: whatever bytes a plugin answers with, the host
// either refuses them (ErrInvalidResponse, or the plugin's error decoded,
// bounded) or returns an identity, credential or cluster list that holds
// the protocol's promises.
func FuzzPluginResponses(f *testing.F) {
	f.Fuzz(func(t *testing.T, call uint8, reply, st []byte, fail bool) {
		ctx := context.Background()
		c := New(wireConn{reply: reply, st: st, fail: fail})
		if _, err := c.Describe(ctx); err != nil {
			t.Fatal(err)
		}
		var err error
		answer := []proto.Message{&pluginv1.ResolveResponse{}, &pluginv1.CredentialResponse{}, &pluginv1.ListClustersResponse{}}[call%3]
		parses := proto.Unmarshal(reply, answer) == nil
		switch call % 3 {
		case 0:
			var id sdk.Identity
			id, err = c.Resolve(ctx, sdk.ResolveRequest{Resolver: "r"})
			if err == nil {
				checkIdentity(t, id)
			}
		case 1:
			var cred sdk.Credential
			cred, err = c.Credential(ctx, sdk.CredentialRequest{Strategy: "s"})
			if err == nil {
				checkCredential(t, cred)
			}
		case 2:
			var clusters []sdk.Cluster
			clusters, err = c.ListClusters(ctx, sdk.ListClustersRequest{})
			if err == nil {
				checkClusters(t, clusters)
			}
		}
		if err == nil {
			if fail {
				t.Fatal("a failed call succeeded")
			}
			return
		}
		if !fail && parses && !errors.Is(err, ErrInvalidResponse) {
			t.Fatalf("a malformed answer was refused with %v, not ErrInvalidResponse", err)
		}
		if len(err.Error()) > maxRefusal {
			t.Fatalf("refusal of %d bytes", len(err.Error()))
		}
		if fail {
			var s spb.Status
			if proto.Unmarshal(st, &s) == nil && codes.Code(s.Code) == codes.NotFound && !errors.Is(err, sdk.ErrNotFound) {
				t.Fatalf("NOT_FOUND decoded to %v", err)
			}
		}
	})
}

func checkIdentity(t *testing.T, id sdk.Identity) {
	t.Helper()
	if !strings.HasPrefix(id.UserEntityRef, "user:") || strings.Count(id.UserEntityRef, "/") != 1 {
		t.Fatalf("identity accepted with UserEntityRef %q", id.UserEntityRef)
	}
	if len(id.OwnershipEntityRefs) > sdk.MaxOwnershipEntityRefs {
		t.Fatalf("identity accepted with %d ownership refs", len(id.OwnershipEntityRefs))
	}
	sorted := slices.Clone(id.OwnershipEntityRefs)
	slices.Sort(sorted)
	if len(slices.Compact(sorted)) != len(id.OwnershipEntityRefs) {
		t.Fatalf("identity accepted with a ref listed twice: %q", id.OwnershipEntityRefs)
	}
	for _, c := range []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "ent", "uip", "typ"} {
		if _, ok := id.Extra[c]; ok {
			t.Fatalf("identity accepted setting the reserved claim %q", c)
		}
	}
	if b, err := json.Marshal(id.Extra); err != nil || len(b) > sdk.MaxExtraClaimsSize {
		t.Fatalf("identity accepted with Extra of %d bytes (%v)", len(b), err)
	}
}

func checkCredential(t *testing.T, c sdk.Credential) {
	t.Helper()
	if c.Token != "" {
		if len(c.Token) > sdk.MaxTokenLength || strings.ContainsFunc(c.Token, func(r rune) bool { return r <= ' ' || r > '~' }) {
			t.Fatalf("credential accepted with token %q", c.Token)
		}
		return
	}
	cert, _ := pem.Decode(c.ClientCertificatePEM)
	key, _ := pem.Decode(c.ClientKeyPEM)
	if cert == nil || key == nil || cert.Type != "CERTIFICATE" || !strings.HasSuffix(key.Type, "PRIVATE KEY") {
		t.Fatalf("credential accepted without a token or a PEM certificate and key")
	}
}

func checkClusters(t *testing.T, clusters []sdk.Cluster) {
	t.Helper()
	if len(clusters) > sdk.MaxClusters {
		t.Fatalf("%d clusters accepted", len(clusters))
	}
	seen := map[string]bool{}
	for _, c := range clusters {
		if c.Name == "" || seen[c.Name] || strings.ContainsAny(c.Name, "/: \n") {
			t.Fatalf("cluster accepted with name %q", c.Name)
		}
		seen[c.Name] = true
		u, err := url.Parse(c.Server)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil {
			t.Fatalf("cluster accepted with server %q", c.Server)
		}
	}
}
