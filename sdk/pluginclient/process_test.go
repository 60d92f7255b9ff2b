package pluginclient_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/spectroauth/spectroauth/sdk"
	"github.com/spectroauth/spectroauth/sdk/pluginclient"
	"github.com/spectroauth/spectroauth/sdk/pluginserver"
)

// helperEnv makes the test binary act as a plugin; its value says which.
const helperEnv = "PLUGINCLIENT_TEST_PLUGIN"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "v1":
		sdk.Serve(sdk.Plugin{Name: "helper", Version: "1.2.3", Impl: helper{}})
	case "v2":
		// A plugin from a future SDK that speaks only protocol version 2.
		cfg, err := pluginserver.NewServeConfig(sdk.Plugin{Name: "helper", Impl: helper{}}, nil)
		if err != nil {
			panic(err)
		}
		cfg.VersionedPlugins = map[int]plugin.PluginSet{2: cfg.VersionedPlugins[sdk.ProtocolVersion]}
		plugin.Serve(cfg)
	}
	os.Exit(0)
}

type helper struct{}

func (helper) Resolvers() []string { return []string{"pid"} }

func (helper) Resolve(_ context.Context, req sdk.ResolveRequest) (sdk.Identity, error) {
	if req.Profile.Email == "" {
		return sdk.Identity{}, fmt.Errorf("no e-mail: %w", sdk.ErrNotFound)
	}
	fmt.Println("stdout is not for plugins") // must not disturb the protocol
	hclog.L().Info("resolving", "email", req.Profile.Email)
	return sdk.Identity{UserEntityRef: fmt.Sprintf("user:default/pid-%d", os.Getpid())}, nil
}

// syncBuffer collects the host's log of the plugin.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startHelper(t *testing.T, which string) (*plugin.Client, *syncBuffer) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"="+which)
	logs := &syncBuffer{}
	pc := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  pluginclient.Handshake,
		VersionedPlugins: pluginclient.VersionedPlugins(),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		GRPCDialOptions:  pluginclient.GRPCDialOptions(),
		Cmd:              cmd,
		Logger:           hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Debug}),
		StartTimeout:     30 * time.Second,
	})
	t.Cleanup(pc.Kill)
	return pc, logs
}

// TestChildProcess runs a plugin the way the daemon does: a child process,
// the handshake on its stdout, its logs on stderr.
func TestChildProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	pc, logs := startHelper(t, "v1")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pluginclient.Open(ctx, pc)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := c.Info()
	if info.Name != "helper" || info.Version != "1.2.3" || !info.Has(sdk.CapabilityResolver) {
		t.Errorf("Info = %+v", info)
	}
	id, err := c.Resolve(ctx, sdk.ResolveRequest{Resolver: "pid", Profile: sdk.Profile{Email: "a@b"}})
	if err != nil {
		t.Fatal(err)
	}
	if id.UserEntityRef == fmt.Sprintf("user:default/pid-%d", os.Getpid()) {
		t.Error("the plugin ran in the host's process")
	}
	if _, err := c.Resolve(ctx, sdk.ResolveRequest{Resolver: "pid"}); !errors.Is(err, sdk.ErrNotFound) || err.Error() != "no e-mail: not found" {
		t.Errorf("Resolve without e-mail = %v, want sdk.ErrNotFound", err)
	}
	// The plugin's hclog output reaches the host's log as a log line of its
	// own, at its level.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "resolving") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if out := logs.String(); !strings.Contains(out, "[INFO]") || !strings.Contains(out, "resolving:") || !strings.Contains(out, "email=a@b") {
		t.Errorf("host log lacks the plugin's log line:\n%s", out)
	}
}

func TestProtocolVersionMismatch(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	pc, _ := startHelper(t, "v2")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := pluginclient.Open(ctx, pc)
	if !errors.Is(err, pluginclient.ErrProtocolVersion) || !strings.Contains(err.Error(), "Plugin version: 2") {
		t.Fatalf("Open of a version 2 plugin = %v, want a clear version error", err)
	}
}

func TestProtocolVersions(t *testing.T) {
	sets := pluginclient.VersionedPlugins()
	if got := pluginclient.ProtocolVersions(sets); !slices.Equal(got, []int{sdk.ProtocolVersion}) {
		t.Errorf("ProtocolVersions(VersionedPlugins()) = %v, want [%d]", got, sdk.ProtocolVersion)
	}
	sets[3], sets[2] = sets[1], sets[1]
	if got := pluginclient.ProtocolVersions(sets); !slices.Equal(got, []int{1, 2, 3}) {
		t.Errorf("ProtocolVersions = %v, want [1 2 3]", got)
	}
}

func TestRunByHand(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"=v1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("a plugin run without the host = %v, want exit status 1", err)
	}
	if stdout.Len() != 0 || !strings.Contains(stderr.String(), "This binary is a plugin") {
		t.Errorf("stdout %q, stderr %q", stdout.String(), stderr.String())
	}
}
