package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/spectroauth/spectroauth/config"
	"github.com/spectroauth/spectroauth/host/internal/atomicfile"
	"github.com/spectroauth/spectroauth/host/pluginhost"
)

// pluginReloadCmd is `spectroauthd plugin reload -config FILE NAME`, the
// inner loop of a plugin author: after a rebuild of plugin NAME's binary
// (plugins.NAME.command) it writes the binary's new digest into
// plugins.NAME.sha256 of FILE, changing nothing else in the file, and has
// the running daemon reload (as `spectroauthd reload` does).
func pluginReloadCmd(args []string, stdout, stderr io.Writer) int {
	usage := "usage: spectroauthd plugin reload -config FILE [-socket PATH] NAME"
	fs := flag.NewFlagSet("plugin reload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "the running daemon's configuration file; its plugins.NAME.sha256 is rewritten")
	var a adminFlags
	a.register(fs)
	if err := fs.Parse(args); err != nil {
		return parseFailed(err)
	}
	if *cfgPath == "" || fs.NArg() != 1 {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	name := fs.Arg(0)
	cfg, err := config.LoadUnvalidated(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "plugin reload: %s: %v\n", *cfgPath, err)
		return 1
	}
	p, ok := cfg.Plugins[name]
	if !ok {
		fmt.Fprintf(stderr, "plugin reload: %s declares no plugins.%s\n", *cfgPath, name)
		return 1
	}
	abs, digest, err := pluginhost.Digest(p.Command)
	if err != nil {
		fmt.Fprintf(stderr, "plugin reload: plugins.%s.command: %v\n", name, err)
		return 1
	}
	changed, err := setPluginDigest(*cfgPath, name, digest)
	if err != nil {
		fmt.Fprintln(stderr, "plugin reload:", err)
		return 1
	}
	if changed {
		fmt.Fprintf(stdout, "plugins.%s.sha256: %s (%s)\n", name, digest, abs)
	} else {
		fmt.Fprintf(stdout, "plugins.%s.sha256: unchanged, %s\n", name, digest)
	}
	return a.askReload("plugin reload", cfg, stdout, stderr)
}

// setPluginDigest writes digest as the value of plugins.<name>.sha256 in
// the YAML file at path, in place: every other byte of the file (comments,
// order, quoting) stays, and so do its mode and, if path is a symlink, the
// link. It reports whether the file changed.
func setPluginDigest(path, name, digest string) (bool, error) {
	// A configuration file reached through a symlink is rewritten where
	// it is, not replaced by a copy at the link.
	path, err := filepath.EvalSymlinks(path)
	if err != nil {
		return false, err
	}
	src, err := os.ReadFile(path)
	if err != nil {
		return false, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	key := "plugins." + name + ".sha256"
	var node *yaml.Node
	if len(doc.Content) == 1 {
		node = lookupYAML(doc.Content[0], "plugins", name, "sha256")
	}
	switch {
	case node == nil || node.Kind != yaml.ScalarNode:
		return false, fmt.Errorf("%s: no %s in the file to rewrite (set by the environment?); add it", path, key)
	case strings.Contains(node.Value, "${"):
		return false, fmt.Errorf("%s: %s is %s, a variable of the daemon's environment, which a reload does not re-read; write the digest into the file instead", path, key, node.Value)
	case node.Value == digest:
		return false, nil
	}
	raw := node.Value
	switch node.Style {
	case yaml.DoubleQuotedStyle:
		raw = `"` + raw + `"`
	case yaml.SingleQuotedStyle:
		raw = "'" + raw + "'"
	case 0, yaml.TaggedStyle:
	default:
		return false, fmt.Errorf("%s: %s is not written as a plain or quoted scalar; write it as sha256: <hex>", path, key)
	}
	lines := bytes.SplitAfter(src, []byte("\n"))
	line, col := node.Line-1, node.Column-1
	if line < 0 || line >= len(lines) || col < 0 || !bytes.HasPrefix(lines[line][col:], []byte(raw)) {
		return false, errors.New(path + ": could not find " + key + " where the YAML parser put it")
	}
	value := digest
	if node.Style == yaml.DoubleQuotedStyle || node.Style == yaml.SingleQuotedStyle {
		value = raw[:1] + digest + raw[:1]
	}
	lines[line] = append(append(append([]byte{}, lines[line][:col]...), value...), lines[line][col+len(raw):]...)
	info, err := os.Stat(path)
	if err != nil {
		return false, err
	}
	if err := atomicfile.WriteFile(path, bytes.Join(lines, nil), info.Mode().Perm()); err != nil {
		return false, fmt.Errorf("writing %s: %w", path, err)
	}
	return true, nil
}

// lookupYAML follows keys through nested mappings from n.
func lookupYAML(n *yaml.Node, keys ...string) *yaml.Node {
	for _, k := range keys {
		if n.Kind != yaml.MappingNode {
			return nil
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == k {
				next = n.Content[i+1]
			}
		}
		if next == nil {
			return nil
		}
		n = next
	}
	return n
}
