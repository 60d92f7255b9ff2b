// Command token-exchange is the spectroauth cluster strategy for clusters
// whose OIDC issuer is a company security token service: it trades the
// user's SpectroCloud ID token for a token of the cluster's audience with
// OAuth 2.0 Token Exchange (RFC 8693). See package tokenexchange for the
// configuration and options.
package main

import (
	"github.com/spectroauth/spectroauth/plugins/token-exchange/tokenexchange"
	"github.com/spectroauth/spectroauth/sdk"
)

func main() {
	sdk.Serve(tokenexchange.Plugin())
}
