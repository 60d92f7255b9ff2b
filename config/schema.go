package config

import (
	"reflect"
	"strconv"
	"strings"
	"time"
)

// Reflection over the schema: the koanf tags of Config are the single source of
// key names for environment overrides, error paths and Dump.

var (
	configType   = reflect.TypeFor[Config]()
	durationType = reflect.TypeFor[time.Duration]()
	secretType   = reflect.TypeFor[Secret]()
	anyType      = reflect.TypeFor[any]()
)

// keyOf returns the koanf key of a struct field, or "" when it has none.
func keyOf(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	key, _, _ := strings.Cut(f.Tag.Get("koanf"), ",")
	return key
}

// fieldByKey finds the field of struct type t whose koanf key is key, exactly or,
// with fold, case-insensitively.
func fieldByKey(t reflect.Type, key string, fold bool) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		k := keyOf(f)
		if k == "" {
			continue
		}
		if k == key || (fold && strings.EqualFold(k, key)) {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// keysOf lists the koanf keys of struct type t in declaration order.
func keysOf(t reflect.Type) []string {
	var keys []string
	for i := range t.NumField() {
		if k := keyOf(t.Field(i)); k != "" {
			keys = append(keys, k)
		}
	}
	return keys
}

// deref strips pointer types.
func deref(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

// isLeaf reports whether t holds a single value rather than keys or elements.
func isLeaf(t reflect.Type) bool {
	switch deref(t).Kind() {
	case reflect.Struct, reflect.Map, reflect.Slice, reflect.Array, reflect.Interface:
		return false
	}
	return true
}

// joinKey appends a map or struct key to a key path.
func joinKey(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// joinIndex appends a list index to a key path.
func joinIndex(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

// describeType says in words what a value of type t looks like in YAML.
func describeType(t reflect.Type) string {
	t = deref(t)
	switch {
	case t == durationType:
		return "a duration such as 90s, 5m, 1h or 7d"
	case t == secretType:
		return "a string"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "a mapping"
	}
	return "a value"
}

// describeValue says in words what kind of YAML value v is, never its content.
func describeValue(v any) string {
	if v == nil {
		return "null"
	}
	switch reflect.TypeOf(v).Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "a mapping"
	}
	return "a value"
}

// suggestKey returns the key of struct type t that the unknown key was probably
// meant to be: a case-insensitive match, or one within a small edit distance.
func suggestKey(t reflect.Type, unknown string) string {
	if t.Kind() != reflect.Struct {
		return ""
	}
	if f, ok := fieldByKey(t, unknown, true); ok {
		return keyOf(f)
	}
	best, bestDist := "", 3
	for _, k := range keysOf(t) {
		if d := editDistance(strings.ToLower(unknown), strings.ToLower(k)); d < bestDist {
			best, bestDist = k, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
