package config

import (
	"sort"
	"strings"
)

// FieldError is one problem with one key. Path is the key path as a user would
// write it, with list elements as [i]: kubernetes.clusters[2].url or
// auth.providers.spectrocloud.production.signIn.resolvers[0].plugin. For an
// environment variable that names no key, Path is the variable's name.
//
// Message never contains a secret: it names keys and variables, not values.
type FieldError struct {
	Path    string
	Message string
}

// Error returns "path: message".
func (e FieldError) Error() string {
	if e.Path == "" {
		return e.Message
	}
	return e.Path + ": " + e.Message
}

// ValidationErrors is every problem found at once, in a stable order.
type ValidationErrors []FieldError

// Error returns one "path: message" line per problem.
func (es ValidationErrors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap exposes each FieldError to errors.Is and errors.As.
func (es ValidationErrors) Unwrap() []error {
	errs := make([]error, len(es))
	for i, e := range es {
		errs[i] = e
	}
	return errs
}

// add appends one problem.
func (es *ValidationErrors) add(path, message string) {
	*es = append(*es, FieldError{Path: path, Message: message})
}

// sortByPath orders problems by key path, keeping the order of problems at the
// same path.
func (es ValidationErrors) sortByPath() {
	sort.SliceStable(es, func(i, j int) bool { return es[i].Path < es[j].Path })
}

// err returns es as an error, or nil when there is no problem.
func (es ValidationErrors) err() error {
	if len(es) == 0 {
		return nil
	}
	return es
}
