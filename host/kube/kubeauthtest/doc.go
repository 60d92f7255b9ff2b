// Package kubeauthtest proves, in its tests, that the credentials spectroauth
// hands out are accepted by kube-apiserver's own JWT authenticator
// (k8s.io/apiserver's oidc package) configured as SpectroCloud clusters are,
// that it rejects what such a cluster rejects, and that the real kubectl,
// running `spectroauthd kube-credential` as its exec credential plugin,
// reaches a test API server that authenticates with that authenticator.
//
// The package exists for its tests: k8s.io/apiserver is heavy (client-go,
// CEL, prometheus), so only this package's tests link it. Build the tests
// once cold in about two minutes on two cores; afterwards they run in
// seconds.
package kubeauthtest
