package sdk

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
)

// MaxEntityRefLength is the longest entity ref an Identity may carry.
const MaxEntityRefLength = 256

// DefaultNamespace is Backstage's default entity namespace.
const DefaultNamespace = "default"

// EntityRef is a Backstage entity reference, "<kind>:<namespace>/<name>".
type EntityRef struct {
	// Kind, e.g. "user" or "group". Backstage compares kinds without regard
	// to case; String writes it in lower case.
	Kind string
	// Namespace, e.g. "default".
	Namespace string
	// Name, e.g. "jdoe". Case is kept.
	Name string
}

// Backstage's default rules for the parts of an entity ref: kind is a letter
// then letters and digits; namespace is a DNS label; name is alphanumeric runs
// joined by single '-', '_' or '.'. Each part is at most 63 characters.
// They are compiled on first use, not in every process's start.
var (
	kindPattern      = lazyPattern(`^[A-Za-z][A-Za-z0-9]*$`)
	namespacePattern = lazyPattern(`^[a-z0-9]+(?:-[a-z0-9]+)*$`)
	namePattern      = lazyPattern(`^[A-Za-z0-9]+(?:[-_.][A-Za-z0-9]+)*$`)
)

// lazyPattern compiles expr the first time the function it returns is called.
func lazyPattern(expr string) func() *regexp.Regexp {
	return sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(expr) })
}

const maxEntityRefPart = 63

// ParseEntityRef parses a Backstage entity ref in full form,
// "<kind>:<namespace>/<name>" (e.g. "user:default/jdoe"), and checks each part
// against Backstage's default naming rules. The kind may be in any case;
// String returns the canonical form with the kind in lower case.
//
// Use ParseEntityRefDefaults to accept the short forms "name" and
// "kind:name".
func ParseEntityRef(ref string) (EntityRef, error) {
	return parseEntityRef(ref, "", "")
}

// ParseEntityRefDefaults parses an entity ref that may leave out its kind and
// namespace, as Backstage allows: "jdoe", "user:jdoe", "default/jdoe" and
// "user:default/jdoe" all parse to user:default/jdoe with defaults "user" and
// DefaultNamespace. An empty default makes that part required.
func ParseEntityRefDefaults(ref, defaultKind, defaultNamespace string) (EntityRef, error) {
	return parseEntityRef(ref, defaultKind, defaultNamespace)
}

func parseEntityRef(ref, defaultKind, defaultNamespace string) (EntityRef, error) {
	if len(ref) > MaxEntityRefLength {
		return EntityRef{}, fmt.Errorf("entity ref of %d bytes is longer than %d", len(ref), MaxEntityRefLength)
	}
	r := EntityRef{Kind: defaultKind, Namespace: defaultNamespace}
	rest := ref
	if kind, after, ok := strings.Cut(rest, ":"); ok {
		r.Kind, rest = kind, after
	} else if defaultKind == "" {
		return EntityRef{}, fmt.Errorf("entity ref %q has no kind: want <kind>:<namespace>/<name>", ref)
	}
	if ns, after, ok := strings.Cut(rest, "/"); ok {
		r.Namespace, rest = ns, after
	} else if defaultNamespace == "" {
		return EntityRef{}, fmt.Errorf("entity ref %q has no namespace: want <kind>:<namespace>/<name>", ref)
	}
	r.Name = rest
	if err := r.Validate(); err != nil {
		return EntityRef{}, fmt.Errorf("entity ref %q: %w", ref, err)
	}
	return r, nil
}

// Validate checks each part against Backstage's default naming rules.
func (r EntityRef) Validate() error {
	var errs []error
	check := func(part, value string, pattern *regexp.Regexp, rule string) {
		switch {
		case value == "":
			errs = append(errs, fmt.Errorf("%s is empty", part))
		case len(value) > maxEntityRefPart:
			errs = append(errs, fmt.Errorf("%s is longer than %d characters", part, maxEntityRefPart))
		case !pattern.MatchString(value):
			errs = append(errs, fmt.Errorf("%s %q is not %s", part, value, rule))
		}
	}
	check("kind", r.Kind, kindPattern(), "a letter followed by letters and digits")
	check("namespace", r.Namespace, namespacePattern(), "lower-case letters and digits joined by '-'")
	check("name", r.Name, namePattern(), "letters and digits joined by single '-', '_' or '.'")
	return errors.Join(errs...)
}

// String returns the canonical form "<kind>:<namespace>/<name>", with kind
// and namespace in lower case, as Backstage writes refs in identity tokens.
func (r EntityRef) String() string {
	return strings.ToLower(r.Kind) + ":" + strings.ToLower(r.Namespace) + "/" + r.Name
}

// validCanonicalRef checks that ref is a valid entity ref in canonical form,
// of the given kind when kind is not empty.
func validCanonicalRef(ref, kind string) error {
	r, err := ParseEntityRef(ref)
	if err != nil {
		return err
	}
	if r.String() != ref {
		return fmt.Errorf("entity ref %q is not in canonical form %q", ref, r.String())
	}
	if kind != "" && r.Kind != kind {
		return fmt.Errorf("entity ref %q has kind %q, want %q", ref, r.Kind, kind)
	}
	return nil
}
