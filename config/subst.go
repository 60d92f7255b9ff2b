package config

import (
	"slices"
	"sort"
	"strings"
)

// substitute replaces ${VAR} in every string value of the tree rooted at m, in
// place. It records which variables went into each key path in origins and
// reports every missing variable or malformed reference. Error messages name
// keys and variables, never values.
func substitute(m map[string]any, lookupEnv func(string) (string, bool), origins map[string][]string) ValidationErrors {
	var errs ValidationErrors
	var walk func(v any, path string) any
	walk = func(v any, path string) any {
		switch x := v.(type) {
		case string:
			out, vars, problems := expand(x, lookupEnv)
			for _, p := range problems {
				errs.add(path, p)
			}
			if len(vars) > 0 {
				origins[path] = vars
			}
			return out
		case map[string]any:
			keys := make([]string, 0, len(x))
			for k := range x {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				x[k] = walk(x[k], joinKey(path, k))
			}
		case []any:
			for i := range x {
				x[i] = walk(x[i], joinIndex(path, i))
			}
		}
		return v
	}
	walk(m, "")
	return errs
}

// expand substitutes the ${VAR} references of s. $${ is a literal ${. It returns
// the result, the variables used, and a message per problem (a missing variable,
// an unterminated or malformed reference). A missing variable expands to "".
// The result is not scanned again, so a value may itself contain ${.
func expand(s string, lookupEnv func(string) (string, bool)) (string, []string, []string) {
	if !strings.Contains(s, "${") {
		return s, nil, nil
	}
	var (
		b        strings.Builder
		vars     []string
		problems []string
	)
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			break
		}
		if i > 0 && s[i-1] == '$' {
			// $${ is an escaped, literal ${.
			b.WriteString(s[:i-1])
			b.WriteString("${")
			s = s[i+2:]
			continue
		}
		b.WriteString(s[:i])
		end := strings.IndexByte(s[i+2:], '}')
		if end < 0 {
			problems = append(problems, "unterminated ${ (write $${ for a literal ${)")
			break
		}
		name := s[i+2 : i+2+end]
		s = s[i+2+end+1:]
		if !validVarName(name) {
			// The text inside the braces is not echoed: it may be part of a secret
			// that happens to contain ${.
			problems = append(problems, "malformed ${...}: a variable name is letters, digits and _, not starting with a digit (write $${ for a literal ${)")
			continue
		}
		val, ok := lookupEnv(name)
		if !ok {
			problems = append(problems, "environment variable "+name+" is not set")
		}
		b.WriteString(val)
		if !slices.Contains(vars, name) {
			vars = append(vars, name)
		}
	}
	return b.String(), vars, problems
}

// validVarName reports whether name is a portable environment variable name.
func validVarName(name string) bool {
	if name == "" {
		return false
	}
	for i, r := range name {
		switch {
		case r == '_', r >= 'A' && r <= 'Z', r >= 'a' && r <= 'z':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
