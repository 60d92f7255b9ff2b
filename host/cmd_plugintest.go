package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.yaml.in/yaml/v3"

	"github.com/spectroauth/spectroauth/config"
	"github.com/spectroauth/spectroauth/host/pluginhost"
	"github.com/spectroauth/spectroauth/sdk/conformance"
)

// pluginTestCmd is `spectroauthd plugin test -plugin PATH [-cases FILE]
// [-read-path PATH]... [-env NAME=VALUE]...`: the conformance suite of
// sdk/conformance (sdk/plugintest's, without package testing) against a
// built plugin binary in any language, with the cases of FILE (YAML or JSON,
// conformance.Suite's fields in any case: config, badConfigs, badOptions,
// resolve, credential, listClusters; each case's expect is found, notFound
// or block). The plugin runs as the daemon runs it, through its own runner
// (pluginhost.Launch): the bytes hashed, from a sealed copy, in its sandbox
// (Landlock: only -read-path beyond the system's folders), with only the
// -env variables, over the handshake with mutual TLS. It prints every failed
// check, then "N passed, M failed", and exits 1 if any failed.
func pluginTestCmd(args []string, stdout, stderr io.Writer) int {
	const usage = "usage: spectroauthd plugin test -plugin PATH [-cases FILE] [-read-path PATH]... [-env NAME=VALUE]..."
	if len(args) == 0 || args[0] != "test" {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	fs := flag.NewFlagSet("plugin test", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("plugin", "", "the plugin binary to check")
	casesFile := fs.String("cases", "", "the cases, YAML or JSON (without: the suite fails for every capability lacking cases)")
	var readPaths, env listFlag
	fs.Var(&readPaths, "read-path", "a path the plugin may read besides the system's, as its readPaths: (repeat the flag for more)")
	fs.Var(&env, "env", "NAME=VALUE in the plugin's environment, as its env: (repeat the flag for more)")
	timeout := fs.Duration("timeout", 30*time.Second, "how long starting the plugin may take")
	if err := fs.Parse(args[1:]); err != nil {
		return parseFailed(err)
	}
	if *path == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	var suite conformance.Suite
	if *casesFile != "" {
		var err error
		if suite, err = readCases(*casesFile); err != nil {
			fmt.Fprintf(stderr, "plugin test: %v\n", err)
			return 1
		}
	}
	cfg := config.Plugin{Command: *path, ReadPaths: readPaths, Env: map[string]config.Secret{}}
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			fmt.Fprintf(stderr, "plugin test: -env %q: want NAME=VALUE\n", kv)
			return 2
		}
		cfg.Env[k] = config.Secret(v)
	}
	var err error
	if cfg.Command, cfg.SHA256, err = pluginhost.Digest(*path); err != nil {
		fmt.Fprintf(stderr, "plugin test: %v\n", err)
		return 1
	}
	log := hclog.New(&hclog.LoggerOptions{Name: "spectroauthd", Level: hclog.Warn, Output: stderr})
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	c, stop, err := pluginhost.Launch(ctx, "test", cfg, pluginhost.Options{Logger: log, StartTimeout: *timeout})
	if err != nil {
		fmt.Fprintf(stderr, "plugin test: %v\n", err)
		return 1
	}
	defer stop()
	res := conformance.CheckClient(stdout, c, suite)
	fmt.Fprintln(stdout, res)
	if res.Failed > 0 {
		return 1
	}
	return 0
}

// listFlag is a flag that may be repeated, each value kept.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// readCases reads a conformance.Suite from a YAML or JSON file. YAML is read
// through JSON, so that keys match the fields in any case, as in JSON.
func readCases(path string) (conformance.Suite, error) {
	var s conformance.Suite
	b, err := os.ReadFile(path)
	if err != nil {
		return s, fmt.Errorf("reading the cases: %w", err)
	}
	var doc any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return s, fmt.Errorf("reading the cases in %s: %w", path, err)
	}
	j, err := json.Marshal(doc)
	if err != nil {
		return s, fmt.Errorf("reading the cases in %s: %w", path, err)
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return s, fmt.Errorf("reading the cases in %s: %w", path, err)
	}
	return s, nil
}
