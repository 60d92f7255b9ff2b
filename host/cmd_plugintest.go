package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"go.yaml.in/yaml/v3"

	"github.com/spectroauth/spectroauth/sdk/conformance"
)

// pluginTestCmd is `spectroauthd plugin test -plugin PATH [-cases FILE]`:
// the conformance suite of sdk/conformance (sdk/plugintest's, without package testing) against a built plugin binary in
// any language, with the cases of FILE (YAML or JSON, conformance.Suite's
// fields in any case: config, badConfigs, badOptions, resolve, credential,
// listClusters; each case's expect is found, notFound or block). It prints
// every failed check, then "N passed, M failed", and exits 1 if any failed.
func pluginTestCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "test" {
		fmt.Fprintln(stderr, "usage: spectroauthd plugin test -plugin PATH [-cases FILE]")
		return 2
	}
	fs := flag.NewFlagSet("plugin test", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("plugin", "", "the plugin binary to check")
	casesFile := fs.String("cases", "", "the cases, YAML or JSON (without: the suite fails for every capability lacking cases)")
	if err := fs.Parse(args[1:]); err != nil {
		return parseFailed(err)
	}
	if *path == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: spectroauthd plugin test -plugin PATH [-cases FILE]")
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
	bin, err := filepath.Abs(*path)
	if err != nil {
		fmt.Fprintf(stderr, "plugin test: %v\n", err)
		return 1
	}
	res := conformance.CheckBinary(stdout, bin, suite)
	fmt.Fprintln(stdout, res)
	if res.Failed > 0 {
		return 1
	}
	return 0
}

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
