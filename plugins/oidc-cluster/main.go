// Command oidc-cluster is the spectroauth cluster strategy for clusters that
// trust SpectroCloud as their OpenID Connect issuer (kube-apiserver with
// oidc-issuer-url set to the Palette tenant): the credential is the user's
// own SpectroCloud ID token, which the daemon refreshes first when it would
// expire within its margin. See package oidccluster for the checks and
// options.
package main

import (
	"github.com/spectroauth/spectroauth/plugins/oidc-cluster/oidccluster"
	"github.com/spectroauth/spectroauth/sdk"
)

func main() {
	sdk.Serve(oidccluster.Plugin())
}
