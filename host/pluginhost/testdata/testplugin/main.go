// Command testplugin is the plugin the pluginhost tests start. What a Resolve
// call does is chosen by the local part of Profile.Email:
//
//	ok, anything else  the identity user:default/<local part>
//	notfound           sdk.ErrNotFound
//	pid                the identity, with the process id and build version in Extra
//	echo               the identity, with what the request carried in Extra
//	env                the identity, with what the environment holds in Extra
//	                   (and the plugin's GOMAXPROCS)
//	snoop              tries what a hostile plugin would: reads its parent's
//	                   /proc environ and mem, every file named in
//	                   TESTPLUGIN_SNOOP (comma-separated), and writes a file
//	                   into each of their directories; Extra holds what it got
//	                   ("read N bytes" or the error), its working directory
//	                   and what that held
//	attrs              tries to change the mode, owner and ACL of a file it
//	                   creates in its working directory and of every file
//	                   named in TESTPLUGIN_ATTRS (comma-separated), with each
//	                   of chmod, fchmod, fchmodat2, chown, lchown, fchown,
//	                   setxattr, lsetxattr, fsetxattr and removexattr; Extra
//	                   holds "<call> <path>": "ok" or the error, "create" and
//	                   "mkdir" (making its file with mode 0600 and a directory
//	                   with 0700), and "mode <path>": each file's mode after
//	flood              logs 5000 error lines as fast as it can, then answers
//	crash              exits with status 3 in the middle of the call
//	hang               never answers, whatever the deadline
//	upstream           waits for its context, like a call to an upstream that
//	                   is slow, and fails with the context's error
//	slow               logs "slow call started", answers after 400ms
//	stdout             writes a line to stdout, then answers
//	stderr             writes a plain line to os.Stderr, then answers
//	log                logs at warn, debug and error (sub-logger), then answers
//	badlog             writes JSON to stderr that hclog would not write
//	garbage            answers an identity that is not valid (bypassing the SDK's check)
//	oversized          answers an identity with 100 ownership refs (bypassing the SDK)
//	huge               answers an identity of 5 MiB (bypassing every limit)
//
// ListClusters lists one cluster, after the source option listDelay.
//
// TESTPLUGIN_LIE_CERT, when set, puts another certificate than the one its
// TLS server presents into its handshake line.
//
// TESTPLUGIN_PROTOCOL (a comma-separated list, "99" or "1,2") sets the plugin
// protocol versions it serves instead of sdk.ProtocolVersion; each serves
// the same services.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/spectroauth/spectroauth/sdk"
	"github.com/spectroauth/spectroauth/sdk/pluginclient"
	"github.com/spectroauth/spectroauth/sdk/pluginserver"
)

// version is set with -ldflags "-X main.version=...".
var version = "1.0.0"

// stderr is the process's real stderr; go-plugin redirects os.Stderr.
var stderr = os.Stderr

type testPlugin struct{ greeting string }

func (p *testPlugin) Configure(_ context.Context, cfg sdk.Config) error {
	if err := cfg.Values.RejectUnknown("greeting"); err != nil {
		return err
	}
	g, err := cfg.Values.StringOr("greeting", "hello")
	p.greeting = g
	return err
}

func (p *testPlugin) ValidateOptions(_ context.Context, req sdk.ValidateOptionsRequest) error {
	return req.Options.RejectUnknown("greeting", "tag", "listDelay")
}

func (p *testPlugin) Resolvers() []string { return []string{"byEmail", "other"} }

func (p *testPlugin) Resolve(ctx context.Context, req sdk.ResolveRequest) (sdk.Identity, error) {
	local, _, _ := strings.Cut(req.Profile.Email, "@")
	id := sdk.Identity{UserEntityRef: "user:default/" + local, OwnershipEntityRefs: []string{"user:default/" + local}}
	switch local {
	case "notfound":
		return sdk.Identity{}, fmt.Errorf("no user %q: %w", req.Profile.Email, sdk.ErrNotFound)
	case "pid":
		id.Extra = map[string]any{"pid": os.Getpid(), "version": version}
	case "echo":
		id.Extra = map[string]any{
			"subject": req.Subject, "issuer": req.Issuer, "preferredUsername": req.PreferredUsername,
			"groups": req.Groups, "custom": req.Claims["custom"], "displayName": req.Profile.DisplayName,
			"emailVerified": req.Profile.EmailVerified, "resolver": req.Resolver,
			"option": req.Options["tag"], "greeting": p.greeting,
		}
	case "env":
		_, secret := os.LookupEnv("SPECTROCLOUD_CLIENT_SECRET")
		_, path := os.LookupEnv("PATH")
		id.Extra = map[string]any{
			"secretVisible": secret, "pathVisible": path,
			"configured": os.Getenv("TESTPLUGIN_CONFIGURED"), "logLevel": os.Getenv(sdk.LogLevelEnv),
			"gomaxprocs": runtime.GOMAXPROCS(0),
		}
	case "snoop":
		id.Extra = snoop()
	case "attrs":
		id.Extra = changeAttrs()
	case "flood":
		for i := range 5000 {
			hclog.L().Error("flooding the daemon's log", "i", i)
		}
	case "crash":
		os.Exit(3)
	case "hang":
		select {}
	case "upstream":
		<-ctx.Done()
		return sdk.Identity{}, fmt.Errorf("the test upstream did not answer: %w", ctx.Err())
	case "slow":
		hclog.L().Info("slow call started")
		time.Sleep(400 * time.Millisecond)
	case "stdout":
		fmt.Println("stray line from the plugin")
	case "stderr":
		fmt.Fprintln(os.Stderr, "plain line on stderr")
	case "log":
		hclog.L().Warn("plugin warning", "detail", "w1")
		hclog.L().Debug("plugin debug detail")
		hclog.L().Named("sub").Error("plugin sub error", "n", 7)
	case "badlog":
		fmt.Fprintln(stderr, `{"@message": 5, "@level": ["x"]}`)
		fmt.Fprintln(stderr, `{"@message": "forged\nline", "@level": "error", "@timestamp": 7}`)
	}
	return id, nil
}

func (p *testPlugin) Strategies() []string { return []string{"token"} }

func (p *testPlugin) Credential(_ context.Context, req sdk.CredentialRequest) (sdk.Credential, error) {
	if req.Session.Subject == "nobody" {
		return sdk.Credential{}, sdk.ErrNotFound
	}
	if req.Cluster.Name == "echo" {
		// Tells which of the user's tokens the host passed.
		s := req.Session
		return sdk.Credential{Token: fmt.Sprintf("id=%s;access=%s;palette=%s", s.IDToken, s.AccessToken, s.PaletteSessionToken)}, nil
	}
	return sdk.Credential{Token: "tok-" + req.Cluster.Name + "-" + req.Session.Subject, ExpiresAt: time.Now().Add(time.Hour)}, nil
}

func (p *testPlugin) ListClusters(ctx context.Context, req sdk.ListClustersRequest) ([]sdk.Cluster, error) {
	delay, err := req.Options.Duration("listDelay", 0)
	if err != nil {
		return nil, err
	}
	select {
	case <-time.After(delay):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return []sdk.Cluster{{Name: "alpha", Server: "https://alpha.example.com:6443", Strategy: "token"}}, nil
}

// snoop tries to read the daemon's secrets, and reports what it got.
func snoop() map[string]any {
	got := map[string]any{}
	try := func(path string) {
		b, err := os.ReadFile(path)
		if err != nil {
			got[path] = err.Error()
			return
		}
		got[path] = fmt.Sprintf("read %d bytes", len(b))
	}
	parent := "/proc/" + strconv.Itoa(os.Getppid())
	try(parent + "/environ")
	if f, err := os.Open(parent + "/mem"); err != nil {
		got[parent+"/mem"] = err.Error()
	} else {
		got[parent+"/mem"] = "opened"
		f.Close()
	}
	for _, path := range strings.Split(os.Getenv("TESTPLUGIN_SNOOP"), ",") {
		if path == "" {
			continue
		}
		try(path)
		planted := filepath.Join(filepath.Dir(path), "planted")
		if err := os.WriteFile(planted, []byte("x"), 0o600); err != nil {
			got[planted] = err.Error()
		} else {
			got[planted] = "written"
		}
	}
	wd, err := os.Getwd()
	if err != nil {
		wd = err.Error()
	}
	got["cwd"] = wd
	var names []string
	entries, _ := os.ReadDir(wd)
	for _, e := range entries {
		names = append(names, e.Name())
	}
	got["cwdEntries"] = strings.Join(names, ",")
	got["tmpdir"] = os.Getenv("TMPDIR")
	return got
}

// posixACL0644 is a system.posix_acl_access value (version 2; user::rw-,
// group::r--, other::r--) that makes a file readable by everyone.
var posixACL0644 = []byte{
	2, 0, 0, 0,
	0x01, 0, 6, 0, 0xff, 0xff, 0xff, 0xff,
	0x04, 0, 4, 0, 0xff, 0xff, 0xff, 0xff,
	0x20, 0, 4, 0, 0xff, 0xff, 0xff, 0xff,
}

// changeAttrs tries to change the mode, owner and ACL of a file of its own
// and of the files in TESTPLUGIN_ATTRS, and reports what it got.
func changeAttrs() map[string]any {
	got := map[string]any{}
	result := func(key string, err error) {
		if err != nil {
			got[key] = err.Error()
		} else {
			got[key] = "ok"
		}
	}
	own, _ := filepath.Abs("own.txt")
	result("create", os.WriteFile(own, []byte("x"), 0o600))
	result("mkdir", os.Mkdir("own.d", 0o700))
	paths := []string{own}
	for _, p := range strings.Split(os.Getenv("TESTPLUGIN_ATTRS"), ",") {
		if p != "" {
			paths = append(paths, p)
		}
	}
	uid, gid := os.Getuid(), os.Getgid()
	cwd := unix.AT_FDCWD
	for _, p := range paths {
		result("chmod "+p, os.Chmod(p, 0o644)) // fchmodat
		if pp, err := unix.BytePtrFromString(p); err == nil {
			_, _, errno := unix.Syscall6(unix.SYS_FCHMODAT2, uintptr(cwd), uintptr(unsafe.Pointer(pp)), 0o644, 0, 0, 0)
			result("fchmodat2 "+p, errnoErr(errno))
		}
		result("chown "+p, os.Chown(p, uid, gid))
		result("lchown "+p, os.Lchown(p, uid, gid))
		result("setxattr "+p, unix.Setxattr(p, "system.posix_acl_access", posixACL0644, 0))
		result("lsetxattr "+p, unix.Lsetxattr(p, "system.posix_acl_access", posixACL0644, 0))
		result("removexattr "+p, unix.Removexattr(p, "user.spectroauth-test"))
		if f, err := os.Open(p); err != nil {
			got["open "+p] = err.Error()
		} else {
			result("fchmod "+p, f.Chmod(0o644))
			result("fchown "+p, f.Chown(uid, gid))
			result("fsetxattr "+p, unix.Fsetxattr(int(f.Fd()), "system.posix_acl_access", posixACL0644, 0))
			f.Close()
		}
		if fi, err := os.Stat(p); err != nil {
			got["mode "+p] = err.Error()
		} else {
			got["mode "+p] = fmt.Sprintf("%#o", fi.Mode().Perm())
		}
	}
	return got
}

func errnoErr(errno unix.Errno) error {
	if errno != 0 {
		return errno
	}
	return nil
}

// The methods misbehave changes the answers of. The plugin reaches the
// protocol's messages through protobuf reflection, by the field names of
// proto/spectroauth/plugin/v1: the generated Go code is internal to the SDK.
const (
	describeMethod = "/spectroauth.plugin.v1.PluginService/Describe"
	resolveMethod  = "/spectroauth.plugin.v1.ResolverService/Resolve"
)

// misbehave answers some Resolve calls with what the SDK would never send.
func misbehave(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	resp, err := handler(ctx, req)
	if err != nil {
		return resp, err
	}
	switch info.FullMethod {
	case describeMethod:
		if os.Getenv("TESTPLUGIN_TOKENS") == "undeclared" {
			// A plugin of an SDK that predates StrategyInfo.
			clearField(resp, "strategy_info")
		}
	case resolveMethod:
		email := get(get(req, "profile").Message(), "email").String()
		local, _, _ := strings.Cut(email, "@")
		id := get(resp, "identity").Message()
		switch local {
		case "garbage":
			set(id, "user_entity_ref", protoreflect.ValueOfString("this is not an entity ref"))
		case "oversized":
			clearField(id, "ownership_entity_refs")
			refs := id.Mutable(field(id, "ownership_entity_refs")).List()
			for i := range 100 {
				refs.Append(protoreflect.ValueOfString(fmt.Sprintf("group:default/g%d", i)))
			}
		case "huge":
			extra, _ := structpb.NewStruct(map[string]any{"blob": strings.Repeat("x", 5<<20)})
			set(id, "extra_claims", protoreflect.ValueOfMessage(extra.ProtoReflect()))
		}
	}
	return resp, nil
}

// field returns the field called name of m's message type.
func field(m protoreflect.Message, name protoreflect.Name) protoreflect.FieldDescriptor {
	fd := m.Descriptor().Fields().ByName(name)
	if fd == nil {
		panic(fmt.Sprintf("testplugin: %s has no field %s", m.Descriptor().FullName(), name))
	}
	return fd
}

// get returns the field called name of the message msg (a proto.Message or a
// protoreflect.Message).
func get(msg any, name protoreflect.Name) protoreflect.Value {
	m := reflectOf(msg)
	return m.Get(field(m, name))
}

func set(m protoreflect.Message, name protoreflect.Name, v protoreflect.Value) {
	m.Set(field(m, name), v)
}

func clearField(msg any, name protoreflect.Name) {
	m := reflectOf(msg)
	m.Clear(field(m, name))
}

func reflectOf(msg any) protoreflect.Message {
	if m, ok := msg.(protoreflect.Message); ok {
		return m
	}
	return msg.(proto.Message).ProtoReflect()
}

func main() {
	tp := &testPlugin{}
	p := sdk.Plugin{Name: "testplugin", Version: version,
		Resolver: tp, ClusterStrategy: tp, ClusterSource: tp, Configurer: tp, OptionsValidator: tp}
	// TESTPLUGIN_TOKENS: the tokens strategy "token" declares, comma-separated
	// ("ID,PALETTE_SESSION"); empty declares none; "undeclared" makes the
	// plugin look like one that predates the declaration.
	if ts := os.Getenv("TESTPLUGIN_TOKENS"); ts != "" && ts != "undeclared" {
		var tokens []sdk.Token
		for _, t := range strings.Split(ts, ",") {
			tokens = append(tokens, sdk.Token(t))
		}
		p.StrategyTokens = map[string][]sdk.Token{"token": tokens}
	}
	if os.Getenv(pluginclient.Handshake.MagicCookieKey) == "" {
		sdk.Serve(p) // explains that this is a plugin, and exits
	}
	logger := hclog.New(&hclog.LoggerOptions{
		Name: p.Name, Level: hclog.LevelFromString(os.Getenv(sdk.LogLevelEnv)), Output: stderr, JSONFormat: true,
	})
	hclog.SetDefault(logger)
	cfg, err := pluginserver.NewServeConfig(p, logger)
	if err != nil {
		fmt.Fprintln(stderr, err)
		os.Exit(1)
	}
	// The SDK's gRPC server (so that calls cost what they cost with
	// sdk.Serve), but with no limit on what it sends and a misbehaving
	// interceptor: the host must protect itself.
	sdkServer := cfg.GRPCServer
	cfg.GRPCServer = func(opts []grpc.ServerOption) *grpc.Server {
		return sdkServer(append(opts, grpc.MaxSendMsgSize(64<<20), grpc.ChainUnaryInterceptor(misbehave)))
	}
	if vs := os.Getenv("TESTPLUGIN_PROTOCOL"); vs != "" {
		// A plugin of another SDK: the same services under other versions.
		set := cfg.VersionedPlugins[sdk.ProtocolVersion]
		cfg.VersionedPlugins = map[int]plugin.PluginSet{}
		for _, v := range strings.Split(vs, ",") {
			n, err := strconv.Atoi(v)
			if err != nil {
				fmt.Fprintln(stderr, "TESTPLUGIN_PROTOCOL:", err)
				os.Exit(1)
			}
			cfg.VersionedPlugins[n] = set
		}
	}
	if os.Getenv("TESTPLUGIN_LEGACY_TLS") != "" {
		// A plugin of an SDK before 0.2.0: go-plugin's AutoMTLS, its
		// certificate in the handshake line.
		os.Unsetenv(pluginclient.CertLineEnv)
	}
	if how := os.Getenv("TESTPLUGIN_LIE_CERT"); how != "" {
		lieAboutCertificate(how)
	}
	plugin.Serve(cfg)
}
