package catalog

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/spectroauth/spectroauth/sdk"
)

// The resolvers the plugin offers, named as Backstage names them.
const (
	// ResolverProfileEmail finds the User whose spec.profile.email is the
	// signed-in user's verified e-mail address, retrying without a "+tag".
	ResolverProfileEmail = "emailMatchingUserEntityProfileEmail"
	// ResolverLocalPart finds the User in the default namespace named after
	// the local part of the verified e-mail address.
	ResolverLocalPart = "emailLocalPartMatchingUserEntityName"
	// ResolverAnnotation finds the User with an annotation (option
	// annotation, default DefaultAnnotation) holding the verified e-mail
	// address.
	ResolverAnnotation = "emailMatchingUserEntityAnnotation"
	// ResolverPreferredUsername finds the User in the default namespace
	// named after the preferred_username claim.
	ResolverPreferredUsername = "preferredUsernameMatchingUserEntityName"
)

// DefaultAnnotation is the annotation ResolverAnnotation matches by default.
const DefaultAnnotation = "spectrocloud.com/email"

// resolverNames lists the resolvers in the order Resolvers returns them.
var resolverNames = []string{ResolverProfileEmail, ResolverLocalPart, ResolverAnnotation, ResolverPreferredUsername}

// Option keys.
const (
	optAllowedDomains = "allowedDomains"
	optDangerous      = "dangerouslyAllowSignInWithoutUserInCatalog"
	optAnnotation     = "annotation"
)

// resolverOptions are a resolver's `options:`, checked.
type resolverOptions struct {
	// allowedDomains are lower-case e-mail domains; nil allows any.
	allowedDomains []string
	// dangerous signs in users missing from the catalog.
	dangerous bool
	// annotation is the annotation ResolverAnnotation matches.
	annotation string
	// key identifies these options in cache keys.
	key string
}

// Annotation keys as Kubernetes and Backstage write them: an optional DNS
// subdomain prefix and a slash, then a name of up to 63 characters.
var (
	annotationNameRe   = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$`)
	annotationPrefixRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$`)
	domainRe           = regexp.MustCompile(`^[^\s@,=/]+$`)
)

// parseOptions checks the options of resolver name. Errors are
// *sdk.ConfigError values naming the key.
func parseOptions(name string, o sdk.Options) (resolverOptions, error) {
	var r resolverOptions
	known := []string{optAllowedDomains, optDangerous}
	if name == ResolverAnnotation {
		known = append(known, optAnnotation)
	}
	if err := o.RejectUnknown(known...); err != nil {
		return r, err
	}
	if o.Has(optAllowedDomains) {
		domains, err := o.Strings(optAllowedDomains)
		if err != nil {
			return r, err
		}
		if len(domains) == 0 {
			// An empty list would refuse everybody: almost certainly a
			// mistake, and one that should not look like "allow all".
			return r, sdk.ConfigErrorf(optAllowedDomains, "is an empty list: leave it out to allow every domain")
		}
		r.allowedDomains = make([]string, 0, len(domains))
		for i, d := range domains {
			d = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), "."))
			if !domainRe.MatchString(d) {
				return r, sdk.ConfigErrorf(fmt.Sprintf("%s[%d]", optAllowedDomains, i), "%q is not a domain such as example.com", domains[i])
			}
			if !slices.Contains(r.allowedDomains, d) {
				r.allowedDomains = append(r.allowedDomains, d)
			}
		}
		slices.Sort(r.allowedDomains)
	}
	var err error
	if r.dangerous, err = o.Bool(optDangerous, false); err != nil {
		return r, err
	}
	if name == ResolverAnnotation {
		if r.annotation, err = o.StringOr(optAnnotation, DefaultAnnotation); err != nil {
			return r, err
		}
		if !validAnnotationKey(r.annotation) {
			return r, sdk.ConfigErrorf(optAnnotation, "%q is not an annotation key such as %s", r.annotation, DefaultAnnotation)
		}
	}
	key, _ := json.Marshal([]any{r.allowedDomains, r.dangerous, r.annotation})
	r.key = string(key)
	return r, nil
}

func validAnnotationKey(k string) bool {
	prefix, name, hasPrefix := strings.Cut(k, "/")
	if !hasPrefix {
		prefix, name = "", k
	}
	if hasPrefix && (len(prefix) > 253 || !annotationPrefixRe.MatchString(prefix)) {
		return false
	}
	return annotationNameRe.MatchString(name)
}

// domainAllowed reports whether the e-mail domain is allowed.
func (r resolverOptions) domainAllowed(domain string) bool {
	if r.allowedDomains == nil {
		return true
	}
	_, found := slices.BinarySearch(r.allowedDomains, strings.ToLower(domain))
	return found
}
