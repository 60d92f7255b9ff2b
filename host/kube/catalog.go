package kube

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Annotations of the catalog entities. The kubernetes.io ones are what
// Backstage's kubernetes plugin reads to locate clusters in the catalog.
const (
	AnnotationAPIServer     = "kubernetes.io/api-server"
	AnnotationAPIServerCA   = "kubernetes.io/api-server-certificate-authority"
	AnnotationAuthProvider  = "kubernetes.io/auth-provider"
	AnnotationTokenProvider = "kubernetes.io/oidc-token-provider"
	// AnnotationClusterName holds the cluster's name here when the entity's
	// name had to differ (Backstage names are stricter).
	AnnotationClusterName = "spectroauth/cluster-name"
)

// entityNameMax is the longest Backstage entity name.
const entityNameMax = 63

// entityNameRE is Backstage's entity name rule.
var entityNameRE = regexp.MustCompile(`^[A-Za-z0-9]+([-_.][A-Za-z0-9]+)*$`)

// labelValueRE is Backstage's label value rule (and its key names).
var labelValueRE = regexp.MustCompile(`^[A-Za-z0-9]+([-_.][A-Za-z0-9]+)*$`)

// dnsLabelRE is Backstage's DNS label rule (the parts of a label key's
// prefix).
var dnsLabelRE = regexp.MustCompile(`^[a-z0-9]+(-+[a-z0-9]+)*$`)

// entity is a Backstage Resource entity, in the field order Backstage writes.
type entity struct {
	APIVersion string         `yaml:"apiVersion"`
	Kind       string         `yaml:"kind"`
	Metadata   entityMetadata `yaml:"metadata"`
	Spec       entitySpec     `yaml:"spec"`
}

type entityMetadata struct {
	Name        string            `yaml:"name"`
	Title       string            `yaml:"title,omitempty"`
	Description string            `yaml:"description,omitempty"`
	Labels      map[string]string `yaml:"labels,omitempty"`
	Annotations map[string]string `yaml:"annotations"`
}

type entitySpec struct {
	Type  string `yaml:"type"`
	Owner string `yaml:"owner"`
}

// catalogYAML renders the clusters as one YAML stream of Resource entities,
// one document each.
func catalogYAML(clusters []ClusterInfo, owner string) ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	for _, c := range clusters {
		name := EntityName(c.Name)
		ann := map[string]string{
			AnnotationAPIServer:     c.Server,
			AnnotationAuthProvider:  "oidc",
			AnnotationTokenProvider: "spectrocloud",
		}
		if len(c.CAData) > 0 {
			ann[AnnotationAPIServerCA] = base64.StdEncoding.EncodeToString(c.CAData)
		}
		if name != c.Name {
			ann[AnnotationClusterName] = c.Name
		}
		title := c.Title
		if title == "" && name != c.Name {
			title = c.Name
		}
		e := entity{
			APIVersion: "backstage.io/v1alpha1",
			Kind:       "Resource",
			Metadata: entityMetadata{
				Name:        name,
				Title:       title,
				Description: c.Description,
				Labels:      entityLabels(c.Labels),
				Annotations: ann,
			},
			Spec: entitySpec{Type: "kubernetes-cluster", Owner: owner},
		}
		if err := enc.Encode(e); err != nil {
			return nil, fmt.Errorf("encoding the catalog entity of cluster %q: %w", c.Name, err)
		}
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encoding the catalog: %w", err)
	}
	return buf.Bytes(), nil
}

// EntityName maps a cluster name to a valid Backstage entity name: the name
// itself when it is one; otherwise its letters and digits with single
// separators, cut to fit, and a hash of the original so that two clusters
// never share an entity.
func EntityName(cluster string) string {
	if len(cluster) <= entityNameMax && entityNameRE.MatchString(cluster) {
		return cluster
	}
	var b strings.Builder
	for _, r := range cluster {
		switch {
		case r < 0x80 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'):
			b.WriteRune(r)
		case r == '-' || r == '_' || r == '.':
			if s := b.String(); s != "" && !strings.ContainsRune("-_.", rune(s[len(s)-1])) {
				b.WriteRune(r)
			}
		}
	}
	sum := sha256.Sum256([]byte(cluster))
	suffix := hex.EncodeToString(sum[:4])
	base := b.String()
	if len(base) > entityNameMax-len(suffix)-1 {
		base = base[:entityNameMax-len(suffix)-1]
	}
	base = strings.TrimRight(base, "-_.")
	if base == "" {
		return "cluster-" + suffix
	}
	return base + "-" + suffix
}

// entityLabels keeps the labels Backstage accepts.
func entityLabels(labels map[string]string) map[string]string {
	var out map[string]string
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		v := labels[k]
		if !validLabelKey(k) || len(v) > entityNameMax || !labelValueRE.MatchString(v) {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[k] = v
	}
	return out
}

// validLabelKey applies Backstage's label key rule: a name (at most 63
// characters, like an entity name), optionally after a DNS subdomain prefix
// and a slash (at most 253 characters, each of its labels at most 63).
func validLabelKey(k string) bool {
	prefix, name, prefixed := strings.Cut(k, "/")
	if !prefixed {
		name = k
	}
	if len(name) > entityNameMax || !entityNameRE.MatchString(name) {
		return false
	}
	if !prefixed {
		return true
	}
	if len(prefix) > 253 {
		return false
	}
	for label := range strings.SplitSeq(prefix, ".") {
		if len(label) > 63 || !dnsLabelRE.MatchString(label) {
			return false
		}
	}
	return true
}
