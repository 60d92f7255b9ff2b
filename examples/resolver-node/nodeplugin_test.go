// Package resolvernode_test runs the Node.js resolver of this folder the way
// spectroauthd runs plugins: a child process started by hashicorp/go-plugin's
// real client, gRPC only, AutoMTLS on, no inherited environment, and spoken to
// through sdk/pluginclient. It proves that a plugin needs no Go to speak the
// protocol.
//
// The tests skip, saying why, when node or this folder's node_modules are
// missing (run `npm ci --ignore-scripts` here first).
package resolvernode_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/spectroauth/spectroauth/sdk"
	"github.com/spectroauth/spectroauth/sdk/pluginclient"
)

const resolver = "emailDomainToUser"

// wrapper returns the plugin's executable, made by make-wrapper.sh as an
// operator makes it, or skips the test when Node.js is not set up here.
func wrapper(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		skipUnlessCI(t, "node is not on PATH: install Node.js 20 or later to test the Node.js plugin example")
	}
	if _, err := os.Stat("node_modules/@grpc/grpc-js/package.json"); err != nil {
		skipUnlessCI(t, "examples/resolver-node/node_modules is missing: run `npm ci --ignore-scripts` in examples/resolver-node")
	}
	out := filepath.Join(t.TempDir(), "resolver-node")
	cmd := exec.Command("sh", "make-wrapper.sh", out)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	line, err := cmd.Output()
	if err != nil {
		t.Fatalf("make-wrapper.sh: %v\n%s", err, stderr.String())
	}
	if !strings.HasPrefix(string(line), "sha256: ") {
		t.Fatalf("make-wrapper.sh printed %q, want the sha256 line", line)
	}
	return out
}

// syncBuffer collects the host's log.
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

// start starts the plugin through go-plugin's client, as the daemon does.
func start(t *testing.T, bin string, versions map[int]plugin.PluginSet) (*plugin.Client, *syncBuffer) {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Env = []string{"SPECTROAUTH_PLUGIN_LOG_LEVEL=debug"} // and nothing of ours
	logs := &syncBuffer{}
	pc := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake,
		VersionedPlugins: versions,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		GRPCDialOptions:  pluginclient.GRPCDialOptions(),
		AutoMTLS:         true,
		SkipHostEnv:      true,
		Cmd:              cmd,
		Logger:           hclog.New(&hclog.LoggerOptions{Name: "host", Output: logs, Level: hclog.Debug}),
		StartTimeout:     30 * time.Second,
	})
	t.Cleanup(func() {
		pc.Kill()
		if t.Failed() {
			t.Logf("host log:\n%s", logs.String())
		}
	})
	return pc, logs
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func request(email string, verified bool) sdk.ResolveRequest {
	return sdk.ResolveRequest{
		Resolver: resolver,
		Options:  sdk.Options{"domain": "example.com"},
		Profile:  sdk.Profile{Email: email, EmailVerified: verified},
		Subject:  "8c1f",
		Issuer:   "https://issuer.test",
	}
}

// TestThroughGoPlugin walks the protocol: handshake with AutoMTLS, Describe,
// Configure, ValidateOptions, Resolve (found, not found, bad input), the
// plugin's logs in the host's log at their level, and a graceful shutdown.
func TestThroughGoPlugin(t *testing.T) {
	bin := wrapper(t)
	began := time.Now()
	pc, logs := start(t, bin, pluginclient.VersionedPlugins())
	c, err := pluginclient.Open(ctx(t), pc)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Logf("cold start through the handshake with AutoMTLS and Describe: %s", time.Since(began).Round(time.Millisecond))
	if v := pc.NegotiatedVersion(); v != sdk.ProtocolVersion {
		t.Errorf("negotiated protocol version %d, want %d", v, sdk.ProtocolVersion)
	}

	info, _ := c.Info()
	want := sdk.Info{
		Name:            "email-domain-node",
		Version:         "1.0.0",
		ProtocolVersion: sdk.ProtocolVersion,
		Capabilities:    []sdk.Capability{sdk.CapabilityResolver, sdk.CapabilityConfigure, sdk.CapabilityValidateOptions},
		Resolvers:       []string{resolver},
	}
	if fmt.Sprint(info) != fmt.Sprint(want) {
		t.Errorf("Describe = %+v\nwant       %+v", info, want)
	}

	t.Run("before Configure", func(t *testing.T) {
		_, err := c.Resolve(ctx(t), request("jdoe@example.com", true))
		if status.Code(err) != codes.FailedPrecondition {
			t.Errorf("Resolve before Configure = %v, want FAILED_PRECONDITION", err)
		}
	})

	t.Run("Configure", func(t *testing.T) {
		for _, tc := range []struct {
			config sdk.Options
			key    string
		}{
			{sdk.Options{"namespace": "Not A Namespace"}, "namespace"},
			{sdk.Options{"namespace": 7.0}, "namespace"},
			{sdk.Options{"namespace": "staff", "domain": "example.com"}, "domain"},
		} {
			err := c.Configure(ctx(t), sdk.Config{InstanceName: "node", Values: tc.config})
			var ce *sdk.ConfigError
			if !errors.As(err, &ce) || ce.Key != tc.key {
				t.Errorf("Configure(%v) = %v, want a *sdk.ConfigError naming %q", tc.config, err, tc.key)
			}
		}
		// A failed Configure leaves the plugin unconfigured.
		if _, err := c.Resolve(ctx(t), request("jdoe@example.com", true)); status.Code(err) != codes.FailedPrecondition {
			t.Errorf("Resolve after a failed Configure = %v, want FAILED_PRECONDITION", err)
		}
		if err := c.Configure(ctx(t), sdk.Config{InstanceName: "node", Values: sdk.Options{"namespace": "staff"}}); err != nil {
			t.Fatalf("Configure: %v", err)
		}
	})

	t.Run("ValidateOptions", func(t *testing.T) {
		good := sdk.ValidateOptionsRequest{Role: sdk.CapabilityResolver, Name: resolver, Options: sdk.Options{"domain": "example.com"}}
		if err := c.ValidateOptions(ctx(t), good); err != nil {
			t.Errorf("ValidateOptions(%v) = %v", good.Options, err)
		}
		for _, tc := range []struct {
			options sdk.Options
			key     string
		}{
			{sdk.Options{}, "domain"},
			{sdk.Options{"domain": ""}, "domain"},
			{sdk.Options{"domain": true}, "domain"},
			{sdk.Options{"domain": "example.com", "domian": "x"}, "domian"},
		} {
			err := c.ValidateOptions(ctx(t), sdk.ValidateOptionsRequest{Role: sdk.CapabilityResolver, Name: resolver, Options: tc.options})
			var ce *sdk.ConfigError
			if !errors.As(err, &ce) || ce.Key != tc.key {
				t.Errorf("ValidateOptions(%v) = %v, want a *sdk.ConfigError naming %q", tc.options, err, tc.key)
			}
		}
		err := c.ValidateOptions(ctx(t), sdk.ValidateOptionsRequest{Role: sdk.CapabilityResolver, Name: "other", Options: good.Options})
		var ie *sdk.InvalidInputError
		if !errors.As(err, &ie) || ie.Field != "Name" {
			t.Errorf("ValidateOptions of another resolver = %v, want an *sdk.InvalidInputError naming Name", err)
		}
	})

	t.Run("Resolve", func(t *testing.T) {
		huge := strings.Repeat("x", 64<<10)
		for _, tc := range []struct {
			name string
			req  sdk.ResolveRequest
			want string // the user ref; empty for not found
		}{
			{"at the domain", request("jdoe@example.com", true), "user:staff/jdoe"},
			{"domain in any case", request("J.Doe@Example.COM", true), "user:staff/J.Doe"},
			{"other domain", request("jdoe@example.org", true), ""},
			{"subdomain", request("jdoe@mail.example.com", true), ""},
			{"unverified", request("jdoe@example.com", false), ""},
			{"no e-mail", request("", true), ""},
			{"two at signs", request("jdoe@evil.org@example.com", true), ""},
			{"not a Backstage name", request("j+doe@example.com", true), ""},
			{"huge", request(huge+"@example.com", true), ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				id, err := c.Resolve(ctx(t), tc.req)
				if tc.want == "" {
					if !errors.Is(err, sdk.ErrNotFound) {
						t.Fatalf("Resolve = %+v, %v; want sdk.ErrNotFound", id, err)
					}
					if !strings.Contains(err.Error(), "no verified e-mail address at example.com") {
						t.Errorf("not-found message %q lost on the way", err)
					}
					return
				}
				if err != nil {
					t.Fatalf("Resolve: %v", err)
				}
				if id.UserEntityRef != tc.want || fmt.Sprint(id.OwnershipEntityRefs) != fmt.Sprint([]string{tc.want}) {
					t.Errorf("Resolve = %+v, want user and owner %s", id, tc.want)
				}
			})
		}
		t.Run("unknown resolver", func(t *testing.T) {
			req := request("jdoe@example.com", true)
			req.Resolver = "other"
			_, err := c.Resolve(ctx(t), req)
			var ie *sdk.InvalidInputError
			if !errors.As(err, &ie) || ie.Field != "Resolver" {
				t.Errorf("Resolve = %v, want an *sdk.InvalidInputError naming Resolver", err)
			}
		})
		t.Run("bad options", func(t *testing.T) {
			req := request("jdoe@example.com", true)
			req.Options = sdk.Options{"domain": 3.0}
			_, err := c.Resolve(ctx(t), req)
			var ce *sdk.ConfigError
			if !errors.As(err, &ce) || ce.Key != "domain" {
				t.Errorf("Resolve = %v, want a *sdk.ConfigError naming domain", err)
			}
		})
		t.Run("concurrent", func(t *testing.T) {
			var wg sync.WaitGroup
			errs := make(chan error, 64)
			for i := range 64 {
				wg.Go(func() {
					want := fmt.Sprintf("user:staff/u%d", i)
					id, err := c.Resolve(ctx(t), request(fmt.Sprintf("u%d@example.com", i), true))
					if err == nil && id.UserEntityRef != want {
						err = fmt.Errorf("got %s, want %s", id.UserEntityRef, want)
					}
					errs <- err
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Error(err)
				}
			}
		})
	})

	t.Run("logs", func(t *testing.T) {
		// The plugin's hclog JSON reaches the host's log as lines of their own
		// level, not as raw text.
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(logs.String(), "configured") && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		out := logs.String()
		// (go-plugin logs the fields in no fixed order.)
		if !regexpMatch(`\[INFO\] +host\.[^:]+: configured: .*instance=node`, out) || !regexpMatch(`\[INFO\] +host\.[^:]+: configured: .*namespace=staff`, out) {
			t.Errorf("the host's log lacks the plugin's info line 'configured':\n%s", out)
		}
		for _, bad := range []string{"stdio service not available", "error encountered while scanning stdout"} {
			if strings.Contains(out, bad) {
				t.Errorf("the host's log says %q", bad)
			}
		}
	})

	t.Run("shutdown", func(t *testing.T) {
		began := time.Now()
		pc.Kill() // GRPCController.Shutdown, then a kill after 2s if still running
		if !pc.Exited() {
			t.Fatal("the plugin still runs after Kill")
		}
		if d := time.Since(began); d > 1500*time.Millisecond || strings.Contains(logs.String(), "plugin failed to exit gracefully") {
			t.Errorf("the plugin did not exit when asked to (Kill took %s):\n%s", d, logs.String())
		}
	})
}

func regexpMatch(pattern, s string) bool {
	return regexp.MustCompile("(?m)" + pattern).MatchString(s)
}

// clientCertPEM makes a certificate like the one go-plugin's host passes in
// PLUGIN_CLIENT_CERT.
func clientCertPEM(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "localhost"},
		DNSNames:              []string{"localhost"},
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// TestProtocolVersionMismatch: a host that speaks only a version the plugin
// does not gets a clear error, not a hang.
func TestProtocolVersionMismatch(t *testing.T) {
	bin := wrapper(t)
	versions := map[int]plugin.PluginSet{2: pluginclient.VersionedPlugins()[sdk.ProtocolVersion]}
	pc, _ := start(t, bin, versions)
	_, err := pluginclient.Open(ctx(t), pc)
	if err == nil || !strings.Contains(err.Error(), "Plugin version: 1") {
		t.Fatalf("Open by a version-2 host = %v, want the version mismatch", err)
	}
}

// TestHandshakeLine starts the plugin by hand, with what go-plugin would set,
// and checks that stdout carries the handshake line and nothing else, with a
// certificate go-plugin can use, and that stderr carries only hclog JSON.
func TestHandshakeLine(t *testing.T) {
	bin := wrapper(t)
	cmd := exec.Command(bin)
	cmd.Env = []string{
		sdk.Handshake.MagicCookieKey + "=" + sdk.Handshake.MagicCookieValue,
		"PLUGIN_PROTOCOL_VERSIONS=1",
		"PLUGIN_CLIENT_CERT=" + clientCertPEM(t),
		"SPECTROAUTH_PLUGIN_LOG_LEVEL=trace",
	}
	var stdout, stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(stdout.String(), "\n") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // room for anything stray
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("the plugin exited with %v after SIGTERM, want status 0", err)
	}

	lines := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
	if len(lines) != 1 {
		t.Fatalf("stdout has %d lines, want only the handshake:\n%s", len(lines), stdout.String())
	}
	f := strings.Split(lines[0], "|")
	if len(f) != 6 || f[0] != "1" || f[1] != "1" || f[2] != "tcp" || !strings.HasPrefix(f[3], "127.0.0.1:") || f[4] != "grpc" {
		t.Fatalf("handshake %q, want 1|1|tcp|127.0.0.1:PORT|grpc|CERT", lines[0])
	}
	der, err := base64.RawStdEncoding.DecodeString(f[5])
	if err != nil {
		t.Fatalf("certificate field: %v (go-plugin decodes it with base64.RawStdEncoding)", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("certificate: %v", err)
	}
	if err := cert.VerifyHostname("localhost"); err != nil {
		t.Errorf("certificate: %v", err)
	}
	if err := cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature); err != nil {
		t.Errorf("certificate signature: %v", err)
	}
	sc := bufio.NewScanner(strings.NewReader(stderr.String()))
	n := 0
	for sc.Scan() {
		var entry map[string]any
		if err := json.Unmarshal(sc.Bytes(), &entry); err != nil || entry["@level"] == nil || entry["@message"] == nil {
			t.Errorf("stderr line is not hclog JSON: %s", sc.Text())
			continue
		}
		if _, err := time.Parse("2006-01-02T15:04:05.000000Z07:00", fmt.Sprint(entry["@timestamp"])); err != nil {
			t.Errorf("@timestamp in a layout go-plugin cannot parse: %v", err)
		}
		n++
	}
	if n == 0 {
		t.Error("no log line on stderr at trace level")
	}
}

// TestRunByHand: without the daemon's handshake the plugin says what it is
// and exits with status 1, printing nothing on stdout.
func TestRunByHand(t *testing.T) {
	bin := wrapper(t)
	cmd := exec.Command(bin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("run by hand = %v, want exit status 1", err)
	}
	if stdout.Len() != 0 || !strings.Contains(stderr.String(), "is a spectroauth plugin") {
		t.Errorf("stdout %q, stderr %q", stdout.String(), stderr.String())
	}
}

// skipUnlessCI skips t for a missing prerequisite, or fails it under CI,
// where .ci/run installs every prerequisite and a missing one is a bug.
func skipUnlessCI(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatal(why + " (CI is set: this fails rather than skips)")
	}
	t.Skip(why)
}
