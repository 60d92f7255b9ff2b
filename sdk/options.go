package sdk

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"
)

// Options is a block of configuration as the daemon's YAML gives it: a
// plugin's `config:` (see Config) or the `options:` of a resolver, strategy or
// source. Values are JSON-like: string, float64 (every number), bool, nil,
// []any and map[string]any.
//
// The getters take a key path, dots separating the levels of nested maps
// ("tls.caFile"), and fail with a *ConfigError naming that path when the value
// has the wrong type or a required key is missing. Use RejectUnknown to refuse
// misspelt keys.
type Options map[string]any

// lookup finds the value at a dotted path.
func (o Options) lookup(path string) (any, bool) {
	var cur any = map[string]any(o)
	for part := range strings.SplitSeq(path, ".") {
		m, ok := asMap(cur)
		if !ok {
			return nil, false
		}
		cur, ok = m[part]
		if !ok {
			return nil, false
		}
	}
	return cur, true
}

func asMap(v any) (map[string]any, bool) {
	switch m := v.(type) {
	case map[string]any:
		return m, true
	case Options:
		return m, true
	}
	return nil, false
}

// Has reports whether path is set (to any value, null included).
func (o Options) Has(path string) bool {
	_, ok := o.lookup(path)
	return ok
}

// String returns the string at path, which is required: a missing or empty
// value is an error.
func (o Options) String(path string) (string, error) {
	v, ok := o.lookup(path)
	if !ok || v == nil {
		return "", ConfigErrorf(path, "is required")
	}
	s, ok := v.(string)
	if !ok {
		return "", typeError(path, "a string", v)
	}
	if s == "" {
		return "", ConfigErrorf(path, "is required")
	}
	return s, nil
}

// StringOr returns the string at path, or def when path is not set.
func (o Options) StringOr(path, def string) (string, error) {
	v, ok := o.lookup(path)
	if !ok || v == nil {
		return def, nil
	}
	s, ok := v.(string)
	if !ok {
		return "", typeError(path, "a string", v)
	}
	return s, nil
}

// Bool returns the boolean at path, or def when path is not set.
func (o Options) Bool(path string, def bool) (bool, error) {
	v, ok := o.lookup(path)
	if !ok || v == nil {
		return def, nil
	}
	b, ok := v.(bool)
	if !ok {
		return false, typeError(path, "true or false", v)
	}
	return b, nil
}

// Int returns the whole number at path, or def when path is not set.
func (o Options) Int(path string, def int) (int, error) {
	v, ok := o.lookup(path)
	if !ok || v == nil {
		return def, nil
	}
	var f float64
	switch n := v.(type) {
	case int:
		return n, nil
	case int64:
		f = float64(n)
	case float64:
		f = n
	case json.Number:
		i, err := n.Int64()
		if err != nil {
			return 0, typeError(path, "a whole number", v)
		}
		f = float64(i)
	default:
		return 0, typeError(path, "a whole number", v)
	}
	if f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		return 0, ConfigErrorf(path, "must be a whole number, not %v", v)
	}
	return int(f), nil
}

// Duration returns the duration at path, written as Go writes durations
// ("30s", "1h30m"), or def when path is not set.
func (o Options) Duration(path string, def time.Duration) (time.Duration, error) {
	v, ok := o.lookup(path)
	if !ok || v == nil {
		return def, nil
	}
	s, ok := v.(string)
	if !ok {
		return 0, typeError(path, `a duration such as "30s"`, v)
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, ConfigErrorf(path, `%q is not a duration such as "30s" or "1h30m"`, s)
	}
	return d, nil
}

// Strings returns the list of strings at path, or nil when path is not set.
func (o Options) Strings(path string) ([]string, error) {
	v, ok := o.lookup(path)
	if !ok || v == nil {
		return nil, nil
	}
	switch l := v.(type) {
	case []string:
		return slices.Clone(l), nil
	case []any:
		out := make([]string, len(l))
		for i, e := range l {
			s, ok := e.(string)
			if !ok {
				return nil, typeError(fmt.Sprintf("%s[%d]", path, i), "a string", e)
			}
			out[i] = s
		}
		return out, nil
	}
	return nil, typeError(path, "a list of strings", v)
}

// StringMap returns the map of strings at path, or nil when path is not set.
func (o Options) StringMap(path string) (map[string]string, error) {
	v, ok := o.lookup(path)
	if !ok || v == nil {
		return nil, nil
	}
	if m, ok := v.(map[string]string); ok {
		return m, nil
	}
	m, ok := asMap(v)
	if !ok {
		return nil, typeError(path, "a map of strings", v)
	}
	out := make(map[string]string, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		e := m[k]
		s, ok := e.(string)
		if !ok {
			return nil, typeError(path+"."+k, "a string", e)
		}
		out[k] = s
	}
	return out, nil
}

// Sub returns the nested block at path, or nil when path is not set. Errors
// from the getters of the block name keys relative to it; wrap them with
// PrefixKey(path, err) to name the full path.
func (o Options) Sub(path string) (Options, error) {
	v, ok := o.lookup(path)
	if !ok || v == nil {
		return nil, nil
	}
	m, ok := asMap(v)
	if !ok {
		return nil, typeError(path, "a map", v)
	}
	return Options(m), nil
}

// List returns the list of blocks at path (a YAML list of maps), or nil when
// path is not set. Name keys inside item i with PrefixKey(fmt.Sprintf("%s[%d]",
// path, i), err).
func (o Options) List(path string) ([]Options, error) {
	v, ok := o.lookup(path)
	if !ok || v == nil {
		return nil, nil
	}
	l, ok := v.([]any)
	if !ok {
		return nil, typeError(path, "a list of maps", v)
	}
	out := make([]Options, len(l))
	for i, e := range l {
		m, ok := asMap(e)
		if !ok {
			return nil, typeError(fmt.Sprintf("%s[%d]", path, i), "a map", e)
		}
		out[i] = Options(m)
	}
	return out, nil
}

// RejectUnknown fails with a *ConfigError naming the first key (in sorted
// order) that is not among known. A known entry may be a dotted path:
// RejectUnknown("url", "tls.caFile", "tls.insecure") also checks the keys
// under tls, while RejectUnknown("url", "tls") accepts anything under tls.
func (o Options) RejectUnknown(known ...string) error {
	root := &keyNode{}
	for _, k := range known {
		n := root
		for part := range strings.SplitSeq(k, ".") {
			if n.children == nil {
				n.children = map[string]*keyNode{}
			}
			c, ok := n.children[part]
			if !ok {
				c = &keyNode{}
				n.children[part] = c
			}
			n = c
		}
		n.leaf = true
	}
	return root.check("", o)
}

// keyNode is a level of the known-key tree of RejectUnknown. A leaf accepts
// any value; an inner node checks the keys of a map value.
type keyNode struct {
	leaf     bool
	children map[string]*keyNode
}

func (n *keyNode) check(prefix string, m map[string]any) error {
	for _, k := range slices.Sorted(maps.Keys(m)) {
		c, ok := n.children[k]
		if !ok {
			known := slices.Sorted(maps.Keys(n.children))
			if len(known) == 0 {
				return ConfigErrorf(prefix+k, "unknown key: no keys are accepted here")
			}
			return ConfigErrorf(prefix+k, "unknown key: known keys here are %s", strings.Join(known, ", "))
		}
		if c.leaf || len(c.children) == 0 {
			continue
		}
		if sub, ok := asMap(m[k]); ok {
			if err := c.check(prefix+k+".", sub); err != nil {
				return err
			}
		}
	}
	return nil
}

// PrefixKey returns err with prefix added in front of the key of the
// *ConfigError it holds, e.g. PrefixKey("mappings[2]", err) turns key "email"
// into "mappings[2].email". Other errors are returned unchanged.
func PrefixKey(prefix string, err error) error {
	var ce *ConfigError
	if prefix == "" || !errors.As(err, &ce) {
		return err
	}
	key := prefix
	if ce.Key != "" {
		key = prefix + "." + ce.Key
	}
	return &ConfigError{Key: key, Err: ce.Err}
}

func typeError(path, want string, got any) error {
	return ConfigErrorf(path, "must be %s, not %s", want, describeValue(got))
}

func describeValue(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case float64, int, int64, json.Number:
		return "a number"
	case []any, []string:
		return "a list"
	case map[string]any, Options, map[string]string:
		return "a map"
	default:
		return fmt.Sprintf("%T", v)
	}
}
