package pluginclient

import (
	"context"
	"errors"
	"maps"
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/spectroauth/spectroauth/sdk"
	pluginv1 "github.com/spectroauth/spectroauth/sdk/internal/pluginv1"
)

// fakePlugin is a plugin written straight against the generated code, as a
// plugin in another language would be, and free to break the protocol.
type fakePlugin struct {
	pluginv1.UnimplementedPluginServiceServer
	pluginv1.UnimplementedResolverServiceServer
	pluginv1.UnimplementedClusterStrategyServiceServer
	pluginv1.UnimplementedClusterSourceServiceServer

	describe        *pluginv1.DescribeResponse
	identity        *pluginv1.Identity
	resolveErr      error
	validateCalls   atomic.Int32
	configureCalled atomic.Bool
	lastOptions     atomic.Pointer[structpb.Struct] // of the last Resolve
}

func (f *fakePlugin) Describe(context.Context, *pluginv1.DescribeRequest) (*pluginv1.DescribeResponse, error) {
	return f.describe, nil
}

func (f *fakePlugin) ValidateOptions(context.Context, *pluginv1.ValidateOptionsRequest) (*pluginv1.ValidateOptionsResponse, error) {
	f.validateCalls.Add(1)
	return nil, status.Error(codes.Unimplemented, "no")
}

func (f *fakePlugin) Resolve(_ context.Context, req *pluginv1.ResolveRequest) (*pluginv1.ResolveResponse, error) {
	f.lastOptions.Store(req.GetOptions())
	if f.resolveErr != nil {
		return nil, f.resolveErr
	}
	return &pluginv1.ResolveResponse{Identity: f.identity}, nil
}

func resolverDescription() *pluginv1.DescribeResponse {
	return &pluginv1.DescribeResponse{
		Name: "fake", Version: "0.1", ProtocolVersion: 1,
		Capabilities: []pluginv1.Capability{pluginv1.Capability_CAPABILITY_RESOLVER},
		Resolvers:    []string{"r"},
	}
}

// serve serves f over a local socket and returns a Client of it.
func serve(t *testing.T, f *fakePlugin) *Client {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(grpc.MaxSendMsgSize(64 << 20))
	pluginv1.RegisterPluginServiceServer(s, f)
	pluginv1.RegisterResolverServiceServer(s, f)
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	conn, err := grpc.NewClient("passthrough:///"+lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return New(conn)
}

func TestDescribe(t *testing.T) {
	tests := []struct {
		name     string
		edit     func(*pluginv1.DescribeResponse)
		wantErr  string
		wantCaps []sdk.Capability
	}{
		{name: "valid", wantCaps: []sdk.Capability{sdk.CapabilityResolver}},
		{
			name:     "capability from a newer protocol revision",
			edit:     func(d *pluginv1.DescribeResponse) { d.Capabilities = append(d.Capabilities, 99) },
			wantCaps: []sdk.Capability{sdk.CapabilityResolver},
		},
		{name: "other protocol version", edit: func(d *pluginv1.DescribeResponse) { d.ProtocolVersion = 2 }, wantErr: "protocol version 2"},
		{name: "no role", edit: func(d *pluginv1.DescribeResponse) { d.Capabilities = nil; d.Resolvers = nil }, wantErr: "offers none of"},
		{name: "bad name", edit: func(d *pluginv1.DescribeResponse) { d.Name = "" }, wantErr: "plugin name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := resolverDescription()
			if tt.edit != nil {
				tt.edit(d)
			}
			c := serve(t, &fakePlugin{describe: d})
			info, err := c.Describe(context.Background())
			if tt.wantErr != "" {
				if !errors.Is(err, ErrInvalidResponse) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Describe = %v, want ErrInvalidResponse containing %q", err, tt.wantErr)
				}
				if _, ok := c.Info(); ok {
					t.Error("Info kept a refused description")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(info.Capabilities) != len(tt.wantCaps) || info.Capabilities[0] != tt.wantCaps[0] {
				t.Errorf("Capabilities = %v, want %v", info.Capabilities, tt.wantCaps)
			}
		})
	}
}

func TestTheHostRefusesBadIdentities(t *testing.T) {
	tests := []struct {
		name    string
		id      *pluginv1.Identity
		wantErr string
	}{
		{name: "missing", id: nil, wantErr: "UserEntityRef is empty"},
		{name: "short form", id: &pluginv1.Identity{UserEntityRef: "jdoe"}, wantErr: "has no kind"},
		{name: "group as user", id: &pluginv1.Identity{UserEntityRef: "group:default/x"}, wantErr: "want \"user\""},
		{name: "bad ownership", id: &pluginv1.Identity{UserEntityRef: "user:default/x", OwnershipEntityRefs: []string{"Group:default/x"}}, wantErr: "canonical"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := serve(t, &fakePlugin{describe: resolverDescription(), identity: tt.id})
			_, err := c.Resolve(context.Background(), sdk.ResolveRequest{Resolver: "r"})
			if !errors.Is(err, ErrInvalidResponse) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Resolve = %v, want ErrInvalidResponse containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestDecodeError(t *testing.T) {
	detail := func(code codes.Code, d *pluginv1.ErrorDetail, msg string) error {
		st, err := status.New(code, msg).WithDetails(d)
		if err != nil {
			t.Fatal(err)
		}
		return st.Err()
	}
	tests := []struct {
		name  string
		err   error
		check func(error) bool
		msg   string
	}{
		{name: "bare not found", err: status.Error(codes.NotFound, "nobody"), check: func(e error) bool { return errors.Is(e, sdk.ErrNotFound) }, msg: "nobody"},
		{
			name: "config error",
			err:  detail(codes.InvalidArgument, &pluginv1.ErrorDetail{Reason: pluginv1.ErrorReason_ERROR_REASON_INVALID_CONFIG, Key: "a.b", Message: "bad"}, `config key "a.b": bad`),
			check: func(e error) bool {
				var ce *sdk.ConfigError
				return errors.As(e, &ce) && ce.Key == "a.b"
			},
			msg: `config key "a.b": bad`,
		},
		{
			name: "invalid argument without detail",
			err:  status.Error(codes.InvalidArgument, "what"),
			check: func(e error) bool {
				var ie *sdk.InvalidInputError
				return errors.As(e, &ie)
			},
			msg: "invalid input: what",
		},
		{name: "deadline the plugin answered", err: detail(codes.DeadlineExceeded, &pluginv1.ErrorDetail{Reason: pluginv1.ErrorReason_ERROR_REASON_RAN_OUT_OF_TIME}, "late"), check: func(e error) bool {
			var ran *PluginRanOutOfTimeError
			return errors.Is(e, context.DeadlineExceeded) && errors.As(e, &ran)
		}, msg: "plugin call: late"},
		{name: "deadline of the caller", err: status.Error(codes.DeadlineExceeded, "late"), check: func(e error) bool {
			var ran *PluginRanOutOfTimeError
			return errors.Is(e, context.DeadlineExceeded) && !errors.As(e, &ran)
		}, msg: "plugin call: late"},
		{name: "stream the plugin reset at its deadline", err: status.Error(codes.DeadlineExceeded, "stream terminated by RST_STREAM with error code: CANCEL"), check: func(e error) bool {
			var ran *PluginRanOutOfTimeError
			return errors.Is(e, context.DeadlineExceeded) && !errors.As(e, &ran)
		}, msg: "plugin call: stream terminated by RST_STREAM with error code: CANCEL"},
		{name: "canceled", err: status.Error(codes.Canceled, "gone"), check: func(e error) bool { return errors.Is(e, context.Canceled) }, msg: "plugin call: gone"},
		{name: "unimplemented", err: status.Error(codes.Unimplemented, "no"), check: func(e error) bool { return errors.Is(e, errors.ErrUnsupported) }},
		{name: "other", err: status.Error(codes.Unavailable, "down"), check: func(e error) bool { return status.Code(e) == codes.Unavailable }, msg: "plugin call failed (Unavailable): down"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := serve(t, &fakePlugin{describe: resolverDescription(), resolveErr: tt.err})
			_, err := c.Resolve(context.Background(), sdk.ResolveRequest{Resolver: "r"})
			if err == nil || !tt.check(err) || (tt.msg != "" && err.Error() != tt.msg) {
				t.Fatalf("Resolve = %v (%T), want %s with message %q", err, err, tt.name, tt.msg)
			}
		})
	}
}

func TestOptionalCallsAndRoles(t *testing.T) {
	ctx := context.Background()
	f := &fakePlugin{describe: resolverDescription()}
	c := serve(t, f)

	// Before Describe the client calls what it is asked; the plugin has no
	// Configure or ValidateOptions and the client copes.
	if err := c.Configure(ctx, sdk.Config{}); err != nil {
		t.Errorf("empty Configure of a plugin without it = %v, want nil", err)
	}
	if err := c.Configure(ctx, sdk.Config{Values: sdk.Options{"a": 1}}); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("Configure with values of a plugin without it = %v, want an error", err)
	}
	if err := c.ValidateOptions(ctx, sdk.ValidateOptionsRequest{Role: sdk.CapabilityResolver, Name: "r"}); err != nil || f.validateCalls.Load() != 1 {
		t.Errorf("ValidateOptions before Describe = %v after %d calls, want nil after 1", err, f.validateCalls.Load())
	}

	if _, err := c.Describe(ctx); err != nil {
		t.Fatal(err)
	}
	// It did not list CAPABILITY_VALIDATE_OPTIONS: no call any more.
	if err := c.ValidateOptions(ctx, sdk.ValidateOptionsRequest{Role: sdk.CapabilityResolver, Name: "r"}); err != nil || f.validateCalls.Load() != 1 {
		t.Errorf("ValidateOptions after Describe = %v after %d calls, want nil without a call", err, f.validateCalls.Load())
	}
	if _, err := c.Credential(ctx, sdk.CredentialRequest{Strategy: "s"}); !errors.Is(err, errors.ErrUnsupported) || !strings.Contains(err.Error(), "not a cluster strategy") {
		t.Errorf("Credential of a resolver-only plugin = %v, want ErrUnsupported", err)
	}
	if _, err := c.ListClusters(ctx, sdk.ListClustersRequest{}); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("ListClusters of a resolver-only plugin = %v, want ErrUnsupported", err)
	}
}

func TestResponseSizeLimit(t *testing.T) {
	refs := []string{"group:default/" + strings.Repeat("x", MaxMessageSize)}
	c := serve(t, &fakePlugin{describe: resolverDescription(), identity: &pluginv1.Identity{UserEntityRef: "user:default/x", OwnershipEntityRefs: refs}})
	_, err := c.Resolve(context.Background(), sdk.ResolveRequest{Resolver: "r"})
	if err == nil || !strings.Contains(err.Error(), "ResourceExhausted") {
		t.Fatalf("Resolve of a response over %d bytes = %v, want refused for its size", MaxMessageSize, err)
	}
}

// TestResolveConverted: options converted once are what the plugin gets,
// whatever req.Options says, and options that cannot cross the wire are
// refused by ConvertOptions as Resolve refuses them.
func TestResolveConverted(t *testing.T) {
	if _, err := ConvertOptions(sdk.Options{"hook": func() {}}); !errors.As(err, new(*sdk.ConfigError)) {
		t.Errorf("ConvertOptions of a func: %v, want a *sdk.ConfigError", err)
	}
	f := &fakePlugin{describe: resolverDescription(), identity: &pluginv1.Identity{UserEntityRef: "user:default/ann"}}
	c := serve(t, f)
	if _, err := c.Describe(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Resolve(context.Background(), sdk.ResolveRequest{Resolver: "r", Options: sdk.Options{"hook": func() {}}}); !errors.As(err, new(*sdk.ConfigError)) {
		t.Errorf("Resolve with a func option: %v, want a *sdk.ConfigError", err)
	}
	opts, err := ConvertOptions(sdk.Options{"tag": "converted", "n": 2})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		opts ConvertedOptions
		want map[string]any
	}{
		{"converted", opts, map[string]any{"tag": "converted", "n": 2.0}},
		{"zero value", ConvertedOptions{}, map[string]any{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := sdk.ResolveRequest{Resolver: "r", Options: sdk.Options{"tag": "per call"}}
			id, err := c.ResolveConverted(context.Background(), req, tc.opts)
			if err != nil || id.UserEntityRef != "user:default/ann" {
				t.Fatalf("ResolveConverted = %+v, %v", id, err)
			}
			if got := f.lastOptions.Load().AsMap(); !maps.Equal(got, tc.want) {
				t.Errorf("the plugin got options %v, want %v", got, tc.want)
			}
		})
	}
}
