package config

import (
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// EnvPrefix starts every environment variable that overrides a key.
const EnvPrefix = "SPECTROAUTH_"

const (
	// envLevelSep separates levels in a variable name.
	envLevelSep = "__"
	// envDelim joins the key segments handed from the env provider to koanf; a
	// segment that contains it is refused.
	envDelim = "\x1e"
	// indexMark starts a segment that is a list index rather than a map key. The
	// merge function turns such segments into list elements. A NUL cannot be
	// part of an environment variable's name.
	indexMark = "\x00"
)

// kubernetesServiceLink, compiled on first use (only SPECTROAUTH_ variables
// need it), matches the variables Kubernetes puts in every
// container of a namespace for each Service (enableServiceLinks, on by
// default): for a Service named spectroauth or spectroauth-something,
// SPECTROAUTH[_SOMETHING]_SERVICE_HOST, _SERVICE_PORT[_NAME], _PORT and
// _PORT_<n>_<proto>[_PROTO|_PORT|_ADDR]. They are not overrides (no key has
// those names, and overrides separate levels with __), and must not stop
// the daemon.
var kubernetesServiceLink = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^SPECTROAUTH(_[A-Z0-9]+)*_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9]+)*|PORT(_[0-9]+_(TCP|UDP|SCTP)(_(PROTO|PORT|ADDR))?)?)$`)
})

// envMapper maps SPECTROAUTH_ variable names to key paths, against the schema
// and the configuration loaded so far (for the spelling of existing map keys
// and the length of existing lists). It collects its errors: koanf's
// TransformFunc cannot return one.
type envMapper struct {
	loaded map[string]any
	seen   map[string]string // key path -> variable name
	errs   ValidationErrors
}

// transform is the env provider's TransformFunc: it returns the koanf key
// (segments joined by envDelim, list indices marked) or "" to skip the variable.
func (m *envMapper) transform(name, value string) (string, any) {
	if kubernetesServiceLink().MatchString(name) {
		return "", nil
	}
	segs, path, err := envKeyPath(name, m.loaded)
	if err != "" {
		m.errs.add(name, err)
		return "", nil
	}
	if prev, dup := m.seen[path]; dup {
		a, b := min(prev, name), max(prev, name)
		m.errs.add(b, fmt.Sprintf("sets %s, which %s sets too", path, a))
		return "", nil
	}
	m.seen[path] = name
	return strings.Join(segs, envDelim), value
}

// envKeyPath maps one variable name to the koanf segments of its key and the key
// path for messages. Levels are matched case-insensitively against the schema's
// keys; a map level takes the spelling of an existing key, or else the level
// lowercased (plugin env names keep their case); a list level takes an index.
func envKeyPath(name string, loaded map[string]any) (segs []string, path string, problem string) {
	rest := strings.TrimPrefix(name, EnvPrefix)
	t := configType
	var node any = loaded
	for _, level := range strings.Split(rest, envLevelSep) {
		if !validEnvSegment(level) {
			return nil, "", "does not name a config key: levels are letters, digits, _, - and ., separated by __"
		}
		t = deref(t)
		where := path
		if where == "" {
			where = "the configuration"
		}
		switch t.Kind() {
		case reflect.Struct:
			f, ok := fieldByKey(t, level, true)
			if !ok {
				return nil, "", fmt.Sprintf("does not name a config key: %s has no key %q", where, strings.ToLower(level))
			}
			key := keyOf(f)
			segs, path, t = append(segs, key), joinKey(path, key), f.Type
			node = childOf(node, key)
		case reflect.Map:
			key := mapKeyFor(node, level, t.Elem() == secretType)
			segs, path, t = append(segs, key), joinKey(path, key), t.Elem()
			node = childOf(node, key)
		case reflect.Slice:
			i, ok := parseIndex(level)
			if !ok {
				return nil, "", fmt.Sprintf("does not name a config key: %s is a list; the level after it must be an index (0, 1, …)", where)
			}
			segs, path, t = append(segs, indexMark+strconv.Itoa(i)), joinIndex(path, i), t.Elem()
			node = elemOf(node, i)
		case reflect.Interface:
			// Free-form: follow what is loaded.
			if list, ok := node.([]any); ok {
				i, ok := parseIndex(level)
				if !ok {
					return nil, "", fmt.Sprintf("does not name a config key: %s is a list; the level after it must be an index (0, 1, …)", where)
				}
				segs, path = append(segs, indexMark+strconv.Itoa(i)), joinIndex(path, i)
				node = elemOf(list, i)
				continue
			}
			key := mapKeyFor(node, level, false)
			segs, path = append(segs, key), joinKey(path, key)
			node = childOf(node, key)
		default:
			return nil, "", fmt.Sprintf("does not name a config key: %s is a value, not a section", where)
		}
	}
	switch t = deref(t); t.Kind() {
	case reflect.Struct:
		return nil, "", fmt.Sprintf("%s is a section; set its keys with %s%s<KEY>", path, name, envLevelSep)
	case reflect.Map:
		return nil, "", fmt.Sprintf("%s is a mapping; set its entries with %s%s<KEY>", path, name, envLevelSep)
	case reflect.Slice:
		if !isLeaf(t.Elem()) {
			return nil, "", fmt.Sprintf("%s is a list of sections; set an element's keys with %s%s0%s<KEY>", path, name, envLevelSep, envLevelSep)
		}
	}
	for _, seg := range segs {
		if strings.Contains(seg, envDelim) {
			return nil, "", fmt.Sprintf("does not name a config key that the environment can reach: %s", path)
		}
	}
	return segs, path, ""
}

// validEnvSegment reports whether a level of a variable name can be a key.
func validEnvSegment(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '-', r == '.':
		default:
			return false
		}
	}
	return true
}

// parseIndex parses a list index: decimal digits, no sign.
func parseIndex(s string) (int, bool) {
	for _, r := range s {
		if r < '0' || r > '9' {
			return 0, false
		}
	}
	i, err := strconv.Atoi(s)
	return i, err == nil
}

// mapKeyFor picks the map key a variable's level means: the existing key that
// matches case-insensitively (an exact match wins), or else the level itself,
// lowercased unless keepCase.
func mapKeyFor(node any, level string, keepCase bool) string {
	if m, ok := node.(map[string]any); ok {
		if _, ok := m[level]; ok {
			return level
		}
		var matches []string
		for k := range m {
			if strings.EqualFold(k, level) {
				matches = append(matches, k)
			}
		}
		if len(matches) > 0 {
			sort.Strings(matches)
			return matches[0]
		}
	}
	if keepCase {
		return level
	}
	return strings.ToLower(level)
}

func childOf(node any, key string) any {
	if m, ok := node.(map[string]any); ok {
		return m[key]
	}
	return nil
}

func elemOf(node any, i int) any {
	if l, ok := node.([]any); ok && i < len(l) {
		return l[i]
	}
	return nil
}

// mergeLayer merges a layer (src) into what is loaded (dest), as koanf's merge
// function: maps merge key by key, a null never erases a lower layer's value, and
// maps whose keys are marked list indices (from the environment) update or append
// list elements. Anything else replaces what was there.
func mergeLayer(src, dest map[string]any) error {
	var errs ValidationErrors
	mergeMap(src, dest, "", &errs)
	return errs.err()
}

func mergeMap(src, dest map[string]any, path string, errs *ValidationErrors) {
	keys := make([]string, 0, len(src))
	for k := range src {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		dest[k] = mergeValue(src[k], dest[k], joinKey(path, k), errs)
	}
}

// mergeValue returns what a layer's value s makes of the loaded value d.
func mergeValue(s, d any, path string, errs *ValidationErrors) any {
	sm, ok := s.(map[string]any)
	switch {
	case s == nil:
		return d
	case !ok:
		return s
	case isIndexMap(sm):
		list, _ := d.([]any)
		return mergeList(sm, list, path, errs)
	}
	dm, ok := d.(map[string]any)
	if !ok {
		dm = map[string]any{}
	}
	mergeMap(sm, dm, path, errs)
	return dm
}

// mergeList applies marked-index entries to a list: an existing index is
// merged, the next free index appends, a larger one is an error.
func mergeList(src map[string]any, list []any, path string, errs *ValidationErrors) []any {
	idx := make([]int, 0, len(src))
	for k := range src {
		i, _ := strconv.Atoi(strings.TrimPrefix(k, indexMark))
		idx = append(idx, i)
	}
	sort.Ints(idx)
	out := append([]any(nil), list...)
	for _, i := range idx {
		s := src[indexMark+strconv.Itoa(i)]
		switch {
		case i < len(out):
			out[i] = mergeValue(s, out[i], joinIndex(path, i), errs)
		case i == len(out):
			out = append(out, mergeValue(s, nil, joinIndex(path, i), errs))
		default:
			errs.add(joinIndex(path, i), fmt.Sprintf("index %d is past the end of the list, which has %d elements; the next free index is %d", i, len(out), len(out)))
		}
	}
	return out
}

// isIndexMap reports whether m's keys are marked list indices.
func isIndexMap(m map[string]any) bool {
	if len(m) == 0 {
		return false
	}
	for k := range m {
		if !strings.HasPrefix(k, indexMark) {
			return false
		}
	}
	return true
}
