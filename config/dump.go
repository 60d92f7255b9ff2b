package config

import (
	"bytes"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"time"

	"go.yaml.in/yaml/v3"
)

// RedactedText is what a Secret prints and what Dump writes in place of a
// secret value.
const RedactedText = "[redacted]"

// secretKeyRE matches free-form keys whose values Dump hides even when they were
// written literally.
var secretKeyRE = regexp.MustCompile(`(?i)secret|passw(or)?d|token|api[-_]?key|private[-_]?key|credential|bearer|cookie`)

// Dump renders the configuration as YAML, in schema order, with the keys a user
// would write, for check-config -print. Secret values are replaced by
// [RedactedText]: every Secret field (client secrets, plugin env, the postgres URL),
// and, in the free-form options and config maps and in plugin args, every value
// that came from a ${VAR} or sits under a key that looks secret (token,
// password, apiKey, …). Empty and false values are left out. The result loads
// back with Load, with [RedactedText] as the value of every hidden secret.
func Dump(c *Config) ([]byte, error) {
	d := dumper{redact: true, origins: c.origins}
	n, _ := d.node(reflect.ValueOf(c).Elem(), "", false)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(n); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// dumper renders a Config as YAML nodes. Without redact it shows secrets: only
// the defaults layer, which holds none, uses it that way.
type dumper struct {
	redact  bool
	origins map[string][]string
	// decodeOnly makes nodes that are decoded and never printed (the
	// defaults layer of Load): a scalar needs only its tag and value, and
	// skips the encode and parse round trip that picks its printed style,
	// most of what Load spent on its defaults.
	decodeOnly bool
}

// node renders v at a key path. opaque marks values whose meaning the schema
// does not know (free-form maps, plugin args): there a substituted value is
// hidden. It reports false when the value is empty and can be left out.
func (d dumper) node(v reflect.Value, path string, opaque bool) (*yaml.Node, bool) {
	if !v.IsValid() {
		return nil, false
	}
	t := v.Type()
	switch {
	case t == durationType:
		return d.scalar(formatDuration(time.Duration(v.Int()))), true
	case t == secretType:
		if v.String() == "" {
			return nil, false
		}
		if d.redact {
			return d.scalar(RedactedText), true
		}
		return d.scalar(v.String()), true
	}
	switch t.Kind() {
	case reflect.Interface:
		if v.IsNil() {
			return nil, false
		}
		return d.node(v.Elem(), path, opaque)
	case reflect.Pointer:
		if v.IsNil() {
			return nil, false
		}
		if n, ok := d.node(v.Elem(), path, opaque); ok {
			return n, true
		}
		// A set pointer is a choice even when its value is empty (emailVerified: false).
		return emptyLike(v.Elem()), true
	case reflect.Struct:
		m := &yaml.Node{Kind: yaml.MappingNode}
		for i := range t.NumField() {
			f := t.Field(i)
			key := keyOf(f)
			if key == "" {
				continue
			}
			child, ok := d.node(v.Field(i), joinKey(path, key), f.Tag.Get("redact") == "substituted")
			if ok {
				m.Content = append(m.Content, d.scalar(key), child)
			}
		}
		return m, len(m.Content) > 0
	case reflect.Map:
		if v.Len() == 0 {
			return nil, false
		}
		free := t.Elem().Kind() == reflect.Interface
		keys := make([]string, 0, v.Len())
		for _, k := range v.MapKeys() {
			keys = append(keys, k.String())
		}
		sort.Strings(keys)
		m := &yaml.Node{Kind: yaml.MappingNode}
		for _, k := range keys {
			hide := (opaque || free) && secretKeyRE.MatchString(k)
			child, ok := d.node(v.MapIndex(reflect.ValueOf(k).Convert(t.Key())), joinKey(path, k), opaque || free)
			if !ok {
				child = emptyLike(v.MapIndex(reflect.ValueOf(k).Convert(t.Key())))
			}
			if hide && d.redact {
				child = d.hideAll(child)
			}
			m.Content = append(m.Content, d.scalar(k), child)
		}
		return m, true
	case reflect.Slice, reflect.Array:
		if v.Len() == 0 {
			return nil, false
		}
		s := &yaml.Node{Kind: yaml.SequenceNode}
		for i := range v.Len() {
			child, ok := d.node(v.Index(i), joinIndex(path, i), opaque)
			if !ok {
				child = emptyLike(v.Index(i))
			}
			s.Content = append(s.Content, child)
		}
		return s, true
	case reflect.String:
		if v.String() == "" {
			return d.scalar(""), opaque
		}
		if d.redact && opaque && len(d.origins[path]) > 0 {
			return d.scalar(RedactedText), true
		}
		return d.scalar(v.String()), true
	case reflect.Bool:
		if !v.Bool() && !opaque {
			return nil, false
		}
	}
	if d.decodeOnly {
		if n, ok := plainScalar(v); ok {
			return n, true
		}
	}
	n := &yaml.Node{}
	if err := n.Encode(v.Interface()); err != nil {
		return nil, false
	}
	return n, true
}

// hideAll replaces every scalar under n with [redacted].
func (d dumper) hideAll(n *yaml.Node) *yaml.Node {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return n
		}
		return scalar(RedactedText)
	case yaml.MappingNode:
		for i := 1; i < len(n.Content); i += 2 {
			n.Content[i] = d.hideAll(n.Content[i])
		}
	case yaml.SequenceNode:
		for i := range n.Content {
			n.Content[i] = d.hideAll(n.Content[i])
		}
	}
	return n
}

// emptyLike renders an empty value that must still be written: a list element
// (so that the indices of the others hold), a map entry or a set pointer.
func emptyLike(v reflect.Value) *yaml.Node {
	for (v.Kind() == reflect.Interface || v.Kind() == reflect.Pointer) && !v.IsNil() {
		v = v.Elem()
	}
	switch v.Kind() {
	case reflect.Struct, reflect.Map:
		return &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle}
	case reflect.Slice, reflect.Array:
		return &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
	case reflect.String:
		return scalar(v.String())
	case reflect.Bool:
		n := &yaml.Node{}
		_ = n.Encode(v.Bool())
		return n
	}
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}
}

// scalar is scalar(s), or for a decodeOnly dumper the string node that
// decodes as s, whatever it would look like printed.
func (d dumper) scalar(s string) *yaml.Node {
	if d.decodeOnly {
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
	}
	return scalar(s)
}

// plainScalar is the node that decodes as v, a boolean or a number, or
// false for another kind.
func plainScalar(v reflect.Value) (*yaml.Node, bool) {
	n := &yaml.Node{Kind: yaml.ScalarNode}
	switch v.Kind() {
	case reflect.Bool:
		n.Tag, n.Value = "!!bool", strconv.FormatBool(v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n.Tag, n.Value = "!!int", strconv.FormatInt(v.Int(), 10)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n.Tag, n.Value = "!!int", strconv.FormatUint(v.Uint(), 10)
	default:
		return nil, false
	}
	return n, true
}

// scalar is a YAML string node, quoted when it would otherwise read as another type.
func scalar(s string) *yaml.Node {
	n := &yaml.Node{}
	_ = n.Encode(s)
	return n
}
