// Package e2e proves, with unmodified Backstage code from npm, that
// spectroauthd works as a Backstage installation's `auth` plugin: Backstage's
// own frontend auth client (core-app-api's OAuth2) in headless Chromium, and
// a minimal Backstage backend (backend-defaults and the catalog) verifying
// the daemon's tokens, and Backstage's Kubernetes plugin packages
// (kubernetes-react in the browser, kubernetes-backend in that backend)
// reaching a token-exchange cluster, authenticated by kube-apiserver's own
// authenticator, as the signed-in user. The tests drive the Node side in ./node; they skip,
// saying why, when Node, its npm packages or Chromium are missing.
package e2e
