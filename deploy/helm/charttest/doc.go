// Package charttest renders the spectroauth Helm chart with Helm's own Go
// library for every values file in testdata/, decodes every object strictly
// into the Kubernetes API types and checks what the chart promises: a
// non-root, read-only pod with probes, a PodDisruptionBudget, a grace period
// above the shutdown timeout, and a configuration spectroauthd accepts
// (check-config). It is its own module so that Helm and k8s.io/api stay out
// of the daemon's build.
package charttest
