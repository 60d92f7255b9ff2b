package kubecli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/mattn/go-isatty"
	"go.yaml.in/yaml/v3"
)

// ExecCredential API versions kubectl speaks.
const (
	ExecAPIVersion       = "client.authentication.k8s.io/v1"
	ExecAPIVersionBeta1  = "client.authentication.k8s.io/v1beta1"
	execInfoEnv          = "KUBERNETES_EXEC_INFO"
	defaultCommandName   = "spectroauthd"
	kubeCredentialSubcmd = "kube-credential"
)

// IO is what a command reads and writes; tests replace parts of it.
type IO struct {
	// Stdout receives only the command's result; Stderr everything else.
	Stdout, Stderr io.Writer
	// Getenv defaults to os.Getenv.
	Getenv func(string) string
	// IsTerminal reports whether the user is at a terminal (stdin); default
	// a check of os.Stdin.
	IsTerminal func() bool
	// OpenBrowser defaults to OpenBrowser.
	OpenBrowser func(string) error
	// HTTP is the base client for the daemon; default one with a 30s
	// timeout (and the --ca-file roots).
	HTTP *http.Client
	// Now defaults to time.Now.
	Now func() time.Time
	// Executable is the path of this program, for kubeconfig's command;
	// default os.Executable.
	Executable func() (string, error)
	// LoginTimeout bounds a browser sign-in; default DefaultLoginTimeout.
	LoginTimeout time.Duration
}

func (o IO) getenv(k string) string {
	if o.Getenv != nil {
		return o.Getenv(k)
	}
	return os.Getenv(k)
}

func (o IO) terminal() bool {
	if o.IsTerminal != nil {
		return o.IsTerminal()
	}
	return isatty.IsTerminal(os.Stdin.Fd()) || isatty.IsCygwinTerminal(os.Stdin.Fd())
}

// common are the flags every command takes.
type common struct {
	server, env, cacheDir, caFile string
	device                        bool
}

// registerDevice adds --device, for the commands that may sign in.
func (c *common) registerDevice(fs *flag.FlagSet) {
	fs.BoolVar(&c.device, "device", false, "sign in with a code entered in any browser (device authorization) instead of opening a local browser; the default when there is no local browser (over SSH, or no display)")
}

// noLocalBrowser reports that the system's browser opener cannot show this
// user a page: an SSH session, or Linux without a display. A command given
// its own opener (tests, embedding programs) always has one.
func noLocalBrowser(o IO) bool {
	if o.OpenBrowser != nil || o.getenv("BROWSER") != "" {
		return false
	}
	if o.getenv("SSH_CONNECTION") != "" || o.getenv("SSH_TTY") != "" {
		return true
	}
	return runtime.GOOS == "linux" && o.getenv("DISPLAY") == "" && o.getenv("WAYLAND_DISPLAY") == ""
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.server, "server", "", "the spectroauth daemon's URL (its server.baseUrl), e.g. https://auth.example.com")
	fs.StringVar(&c.env, "env", "", "the Backstage environment to sign in to (default: the daemon's only one)")
	fs.StringVar(&c.cacheDir, "cache-dir", "", "where sessions and credentials are kept (default: <user cache dir>/spectroauth)")
	fs.StringVar(&c.caFile, "ca-file", "", "PEM certificates to trust for the daemon's TLS instead of the system's")
}

// client builds the Client the flags describe.
func (c *common) client(o IO, interactive bool) (*Client, error) {
	if c.server == "" {
		return nil, errors.New("--server is required: the spectroauth daemon's URL")
	}
	u, err := url.Parse(c.server)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("--server %q is not an http(s) URL", c.server)
	}
	if u.Scheme == "http" && !loopbackHost(u.Hostname()) {
		return nil, fmt.Errorf("--server %q: tokens never travel over plain http except to this machine; use https", c.server)
	}
	dir := c.cacheDir
	if dir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			return nil, fmt.Errorf("finding the user cache directory (set --cache-dir): %w", err)
		}
		dir = filepath.Join(base, "spectroauth")
	}
	hc := o.HTTP
	if c.caFile != "" {
		pem, err := os.ReadFile(c.caFile)
		if err != nil {
			return nil, fmt.Errorf("--ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca-file %s holds no PEM certificate", c.caFile)
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
		hc = &http.Client{Transport: tr, Timeout: 30 * time.Second}
	}
	return &Client{
		Server:       strings.TrimRight(c.server, "/"),
		Env:          c.env,
		CacheDir:     dir,
		HTTP:         hc,
		Interactive:  interactive,
		Device:       c.device || noLocalBrowser(o),
		OpenBrowser:  o.OpenBrowser,
		Stderr:       o.Stderr,
		Now:          o.Now,
		LoginTimeout: o.LoginTimeout,
	}, nil
}

func loopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// execInfo is KUBERNETES_EXEC_INFO, as kubectl sets it.
type execInfo struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Spec       struct {
		Interactive bool `json:"interactive"`
		Cluster     *struct {
			Server string `json:"server"`
			// Config is the cluster's exec extension: it may name the
			// cluster and daemon instead of the flags.
			Config struct {
				Cluster string `json:"cluster"`
				Server  string `json:"server"`
				Env     string `json:"env"`
			} `json:"config"`
		} `json:"cluster"`
	} `json:"spec"`
}

// execCredential is the command's output.
type execCredential struct {
	APIVersion string     `json:"apiVersion"`
	Kind       string     `json:"kind"`
	Spec       struct{}   `json:"spec"`
	Status     execStatus `json:"status"`
}

type execStatus struct {
	ExpirationTimestamp   string `json:"expirationTimestamp,omitempty"`
	Token                 string `json:"token,omitempty"`
	ClientCertificateData string `json:"clientCertificateData,omitempty"`
	ClientKeyData         string `json:"clientKeyData,omitempty"`
}

// fail writes a command's error to stderr and returns the exit status.
func fail(o IO, cmd string, err error) int {
	fmt.Fprintf(o.Stderr, "spectroauthd %s: %v\n", cmd, err)
	return 1
}

// KubeCredential is `spectroauthd kube-credential`: a kubectl exec
// credential command. It writes only the ExecCredential JSON to stdout;
// everything else goes to stderr, and failures exit non-zero.
func KubeCredential(ctx context.Context, args []string, o IO) int {
	const cmd = kubeCredentialSubcmd
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(o.Stderr)
	var c common
	c.register(fs)
	c.registerDevice(fs)
	cluster := fs.String("cluster", "", "the cluster's name at the daemon")
	if err := fs.Parse(args); err != nil {
		return parseFailed(err)
	}
	apiVersion := ExecAPIVersion
	interactive := o.terminal()
	if raw := o.getenv(execInfoEnv); raw != "" {
		var info execInfo
		if err := json.Unmarshal([]byte(raw), &info); err != nil {
			return fail(o, cmd, fmt.Errorf("%s is not an ExecCredential: %w", execInfoEnv, err))
		}
		switch info.APIVersion {
		case ExecAPIVersion, ExecAPIVersionBeta1:
			apiVersion = info.APIVersion
		default:
			return fail(o, cmd, fmt.Errorf("kubectl asks for ExecCredential %q; this command speaks %s and %s", info.APIVersion, ExecAPIVersion, ExecAPIVersionBeta1))
		}
		interactive = info.Spec.Interactive
		if cl := info.Spec.Cluster; cl != nil {
			if *cluster == "" {
				*cluster = cl.Config.Cluster
			}
			if c.server == "" {
				c.server = cl.Config.Server
			}
			if c.env == "" {
				c.env = cl.Config.Env
			}
		}
	}
	if *cluster == "" {
		return fail(o, cmd, errors.New("--cluster is required (or the cluster's exec extension config.cluster with provideClusterInfo)"))
	}
	client, err := c.client(o, interactive)
	if err != nil {
		return fail(o, cmd, err)
	}
	cred, err := client.Credential(ctx, *cluster)
	if err != nil {
		return fail(o, cmd, err)
	}
	out := execCredential{APIVersion: apiVersion, Kind: "ExecCredential"}
	out.Status = execStatus{Token: cred.Token, ClientCertificateData: cred.ClientCertificateData, ClientKeyData: cred.ClientKeyData}
	if !cred.ExpiresAt.IsZero() {
		out.Status.ExpirationTimestamp = cred.ExpiresAt.UTC().Format(time.RFC3339)
	}
	b, err := json.Marshal(out)
	if err != nil {
		return fail(o, cmd, err)
	}
	if _, err := o.Stdout.Write(append(b, '\n')); err != nil {
		return fail(o, cmd, err)
	}
	return 0
}

// Login is `spectroauthd login`: sign in with SpectroCloud in the browser
// (or, with --device or without a local browser, with a code entered in any
// browser) and keep the session for kube-credential.
func Login(ctx context.Context, args []string, o IO) int {
	const cmd = "login"
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(o.Stderr)
	var c common
	c.register(fs)
	c.registerDevice(fs)
	if err := fs.Parse(args); err != nil {
		return parseFailed(err)
	}
	client, err := c.client(o, true)
	if err != nil {
		return fail(o, cmd, err)
	}
	if _, err := client.Login(ctx); err != nil {
		return fail(o, cmd, err)
	}
	return 0
}

// Logout is `spectroauthd logout`: end the CLI session and forget cached
// credentials.
func Logout(ctx context.Context, args []string, o IO) int {
	const cmd = "logout"
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(o.Stderr)
	var c common
	c.register(fs)
	if err := fs.Parse(args); err != nil {
		return parseFailed(err)
	}
	client, err := c.client(o, false)
	if err != nil {
		return fail(o, cmd, err)
	}
	if err := client.Logout(ctx); err != nil {
		return fail(o, cmd, err)
	}
	fmt.Fprintf(o.Stderr, "Signed out of %s.\n", client.base())
	return 0
}

// kubeconfig types, in the field order kubectl writes.
type kubeconfigFile struct {
	APIVersion     string         `yaml:"apiVersion"`
	Kind           string         `yaml:"kind"`
	Clusters       []namedCluster `yaml:"clusters"`
	Users          []namedUser    `yaml:"users"`
	Contexts       []namedContext `yaml:"contexts"`
	CurrentContext string         `yaml:"current-context"`
}

type namedCluster struct {
	Name    string `yaml:"name"`
	Cluster struct {
		Server                   string `yaml:"server"`
		CertificateAuthorityData string `yaml:"certificate-authority-data,omitempty"`
	} `yaml:"cluster"`
}

type namedUser struct {
	Name string `yaml:"name"`
	User struct {
		Exec execConfig `yaml:"exec"`
	} `yaml:"user"`
}

type execConfig struct {
	APIVersion         string   `yaml:"apiVersion"`
	Command            string   `yaml:"command"`
	Args               []string `yaml:"args"`
	InteractiveMode    string   `yaml:"interactiveMode"`
	ProvideClusterInfo bool     `yaml:"provideClusterInfo"`
	InstallHint        string   `yaml:"installHint"`
}

type namedContext struct {
	Name    string `yaml:"name"`
	Context struct {
		Cluster   string `yaml:"cluster"`
		User      string `yaml:"user"`
		Namespace string `yaml:"namespace,omitempty"`
	} `yaml:"context"`
}

// Kubeconfig is `spectroauthd kubeconfig`: print a kubeconfig whose user
// runs `spectroauthd kube-credential` for the cluster. The cluster's API
// server and CA come from the daemon (signing in first when needed and at a
// terminal), or from --cluster-server and --cluster-ca-file.
func Kubeconfig(ctx context.Context, args []string, o IO) int {
	const cmd = "kubeconfig"
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(o.Stderr)
	var c common
	c.register(fs)
	c.registerDevice(fs)
	cluster := fs.String("cluster", "", "the cluster's name at the daemon")
	contextName := fs.String("context", "", "the kubeconfig context name (default: the cluster's name)")
	namespace := fs.String("namespace", "", "the context's namespace")
	command := fs.String("command", "", "the credential command kubectl runs (default: this program's path)")
	clusterServer := fs.String("cluster-server", "", "the cluster's API server URL (default: asked from the daemon)")
	clusterCAFile := fs.String("cluster-ca-file", "", "PEM CA file of the cluster's API server (with --cluster-server)")
	if err := fs.Parse(args); err != nil {
		return parseFailed(err)
	}
	if *cluster == "" {
		return fail(o, cmd, errors.New("--cluster is required"))
	}
	client, err := c.client(o, o.terminal())
	if err != nil {
		return fail(o, cmd, err)
	}
	server, caData := *clusterServer, ""
	if server != "" {
		if *clusterCAFile != "" {
			pem, err := os.ReadFile(*clusterCAFile)
			if err != nil {
				return fail(o, cmd, fmt.Errorf("--cluster-ca-file: %w", err))
			}
			caData = base64.StdEncoding.EncodeToString(pem)
		}
	} else {
		clusters, err := client.Clusters(ctx)
		if err != nil {
			return fail(o, cmd, fmt.Errorf("%w (or give --cluster-server)", err))
		}
		var names []string
		for _, cl := range clusters {
			if cl.Name == *cluster {
				server, caData = cl.Server, cl.CAData
			}
			names = append(names, cl.Name)
		}
		if server == "" {
			return fail(o, cmd, fmt.Errorf("the daemon offers you no cluster %q (it offers: %s)", *cluster, strings.Join(names, ", ")))
		}
	}
	if *command == "" {
		exe := o.Executable
		if exe == nil {
			exe = os.Executable
		}
		if *command, err = exe(); err != nil {
			*command = defaultCommandName
		}
	}
	execArgs := []string{kubeCredentialSubcmd, "--server", client.Server, "--cluster", *cluster}
	if c.env != "" {
		execArgs = append(execArgs, "--env", c.env)
	}
	if c.cacheDir != "" {
		execArgs = append(execArgs, "--cache-dir", c.cacheDir)
	}
	if c.caFile != "" {
		execArgs = append(execArgs, "--ca-file", c.caFile)
	}
	name := *contextName
	if name == "" {
		name = *cluster
	}
	user := *cluster + "-spectroauth"
	kc := kubeconfigFile{APIVersion: "v1", Kind: "Config", CurrentContext: name}
	var nc namedCluster
	nc.Name = *cluster
	nc.Cluster.Server, nc.Cluster.CertificateAuthorityData = server, caData
	var nu namedUser
	nu.Name = user
	nu.User.Exec = execConfig{
		APIVersion:      ExecAPIVersion,
		Command:         *command,
		Args:            execArgs,
		InteractiveMode: "IfAvailable",
		InstallHint:     "kubectl runs spectroauthd kube-credential for this cluster: install spectroauthd, or run `spectroauthd kubeconfig` again to fix the command's path.",
	}
	var nx namedContext
	nx.Name = name
	nx.Context.Cluster, nx.Context.User, nx.Context.Namespace = *cluster, user, *namespace
	kc.Clusters, kc.Users, kc.Contexts = []namedCluster{nc}, []namedUser{nu}, []namedContext{nx}
	enc := yaml.NewEncoder(o.Stdout)
	enc.SetIndent(2)
	if err := enc.Encode(kc); err != nil {
		return fail(o, cmd, err)
	}
	if err := enc.Close(); err != nil {
		return fail(o, cmd, err)
	}
	return 0
}

// parseFailed is the exit status of a command whose flags did not parse:
// 0 when help was asked for (-h), else 2 (the flag package printed why).
func parseFailed(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return 2
}
