package sdk

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// Bounds on what plugins return. Both ends enforce them: the SDK refuses to
// send a value that exceeds them, and the host refuses to receive one.
const (
	// MaxOwnershipEntityRefs is the most ownership refs an Identity may
	// carry.
	MaxOwnershipEntityRefs = 64
	// MaxExtraClaimsSize is the largest JSON encoding of Identity.Extra.
	MaxExtraClaimsSize = 8 << 10
	// MaxTokenLength is the longest Credential.Token.
	MaxTokenLength = 64 << 10
	// MaxClusters is the most clusters a ClusterSource may list.
	MaxClusters = 10000
	// maxClusterName is the longest Cluster.Name.
	maxClusterName = 253
	// maxClusterText bounds Title, Description and label and annotation
	// values.
	maxClusterText = 4096
	// maxClusterMeta is the most labels plus annotations of a Cluster.
	maxClusterMeta = 256
)

// Validate checks the identity: UserEntityRef is a canonical entity ref of
// kind user; every ownership ref is a canonical entity ref, at most
// MaxOwnershipEntityRefs of them, none twice; Extra encodes as JSON within
// MaxExtraClaimsSize and sets none of ReservedClaims.
func (id Identity) Validate() error {
	var errs []error
	if id.UserEntityRef == "" {
		errs = append(errs, errors.New("UserEntityRef is empty"))
	} else if err := validCanonicalRef(id.UserEntityRef, "user"); err != nil {
		errs = append(errs, fmt.Errorf("UserEntityRef: %w", err))
	}
	if n := len(id.OwnershipEntityRefs); n > MaxOwnershipEntityRefs {
		errs = append(errs, fmt.Errorf("OwnershipEntityRefs has %d refs, more than %d", n, MaxOwnershipEntityRefs))
	} else {
		seen := make(map[string]bool, n)
		for i, ref := range id.OwnershipEntityRefs {
			if err := validCanonicalRef(ref, ""); err != nil {
				errs = append(errs, fmt.Errorf("OwnershipEntityRefs[%d]: %w", i, err))
			} else if seen[ref] {
				errs = append(errs, fmt.Errorf("OwnershipEntityRefs[%d]: %q is listed twice", i, ref))
			}
			seen[ref] = true
		}
	}
	if len(id.Extra) > 0 {
		for _, c := range reservedClaims {
			if _, ok := id.Extra[c]; ok {
				errs = append(errs, fmt.Errorf("Extra sets the reserved claim %q", c))
			}
		}
		if b, err := json.Marshal(id.Extra); err != nil {
			errs = append(errs, fmt.Errorf("Extra is not representable as JSON: %w", err))
		} else if len(b) > MaxExtraClaimsSize {
			errs = append(errs, fmt.Errorf("Extra is %d bytes of JSON, more than %d", len(b), MaxExtraClaimsSize))
		}
	}
	return errors.Join(errs...)
}

// Validate checks the credential: a Token (at most MaxTokenLength, printable
// ASCII without spaces, as it goes into an Authorization header) or a client
// certificate; ClientCertificatePEM and ClientKeyPEM set together, each a PEM
// block.
func (c Credential) Validate() error {
	var errs []error
	hasCert := len(c.ClientCertificatePEM) > 0 || len(c.ClientKeyPEM) > 0
	switch {
	case c.Token == "" && !hasCert:
		errs = append(errs, errors.New("Credential has neither Token nor ClientCertificatePEM"))
	case len(c.Token) > MaxTokenLength:
		errs = append(errs, fmt.Errorf("Token is %d bytes, more than %d", len(c.Token), MaxTokenLength))
	case strings.IndexFunc(c.Token, func(r rune) bool { return r <= ' ' || r > '~' }) >= 0:
		errs = append(errs, errors.New("Token has characters other than printable ASCII"))
	}
	if hasCert {
		if len(c.ClientCertificatePEM) == 0 || len(c.ClientKeyPEM) == 0 {
			errs = append(errs, errors.New("ClientCertificatePEM and ClientKeyPEM must be set together"))
		} else {
			if b, _ := pem.Decode(c.ClientCertificatePEM); b == nil || b.Type != "CERTIFICATE" {
				errs = append(errs, errors.New("ClientCertificatePEM is not a PEM certificate"))
			}
			if b, _ := pem.Decode(c.ClientKeyPEM); b == nil || !strings.HasSuffix(b.Type, "PRIVATE KEY") {
				errs = append(errs, errors.New("ClientKeyPEM is not a PEM private key"))
			}
		}
	}
	return errors.Join(errs...)
}

var clusterNamePattern = lazyPattern(`^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$`)

// Validate checks the cluster: a Name of letters, digits, '.', '_' and '-'
// (at most 253); an https Server URL with a host and no credentials, query
// or fragment; CAData, when set, PEM certificates only; Strategy, when set,
// a valid name; bounded labels, annotations, title and description.
func (c Cluster) Validate() error {
	var errs []error
	if len(c.Name) > maxClusterName || !clusterNamePattern().MatchString(c.Name) {
		errs = append(errs, fmt.Errorf("Name %q is not letters, digits, '.', '_' and '-' (at most %d, starting and ending with a letter or digit)", truncate(c.Name), maxClusterName))
	}
	if u, err := url.Parse(c.Server); err != nil {
		errs = append(errs, fmt.Errorf("Server: %w", err))
	} else if u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		errs = append(errs, fmt.Errorf("Server %q is not an https URL with a host and no credentials, query or fragment", truncate(c.Server)))
	}
	if len(c.CAData) > 0 {
		if err := checkCertificates(c.CAData); err != nil {
			errs = append(errs, fmt.Errorf("CAData: %w", err))
		}
	}
	if c.Strategy != "" && !isName(c.Strategy) {
		errs = append(errs, fmt.Errorf("Strategy %q is not a valid strategy name", truncate(c.Strategy)))
	}
	if n := len(c.Labels) + len(c.Annotations); n > maxClusterMeta {
		errs = append(errs, fmt.Errorf("%d labels and annotations, more than %d", n, maxClusterMeta))
	}
	errs = append(errs, checkMeta("Labels", c.Labels), checkMeta("Annotations", c.Annotations))
	if len(c.Title) > maxClusterText || len(c.Description) > maxClusterText {
		errs = append(errs, fmt.Errorf("Title or Description is longer than %d bytes", maxClusterText))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cluster %q: %w", truncate(c.Name), err)
	}
	return nil
}

func checkMeta(field string, m map[string]string) error {
	for k, v := range m {
		if k == "" || len(k) > MaxEntityRefLength || len(v) > maxClusterText {
			return fmt.Errorf("%s: key %q or its value is empty or too long", field, truncate(k))
		}
	}
	return nil
}

// ValidateClusters checks a ClusterSource's list: at most MaxClusters, each
// valid, names unique.
func ValidateClusters(clusters []Cluster) error {
	if len(clusters) > MaxClusters {
		return fmt.Errorf("%d clusters, more than %d", len(clusters), MaxClusters)
	}
	var errs []error
	seen := make(map[string]bool, len(clusters))
	for _, c := range clusters {
		if err := c.Validate(); err != nil {
			errs = append(errs, err)
		} else if seen[c.Name] {
			errs = append(errs, fmt.Errorf("cluster %q is listed twice", c.Name))
		}
		seen[c.Name] = true
	}
	return errors.Join(errs...)
}

func checkCertificates(data []byte) error {
	n := 0
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			if len(strings.TrimSpace(string(rest))) > 0 {
				return errors.New("has data that is not PEM")
			}
			break
		}
		if b.Type != "CERTIFICATE" {
			return fmt.Errorf("has a PEM block of type %q, not CERTIFICATE", b.Type)
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return err
		}
		n++
	}
	if n == 0 {
		return errors.New("has no PEM certificate")
	}
	return nil
}

// truncate shortens a value quoted in an error message.
func truncate(s string) string {
	const max = 80
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}

// checkOffered checks a requested resolver or strategy name against the
// offered ones.
func checkOffered(field, name string, offered []string) error {
	if !slices.Contains(offered, name) {
		return InvalidInputf(field, "%q is not offered by this plugin (it offers %s)", truncate(name), strings.Join(offered, ", "))
	}
	return nil
}
