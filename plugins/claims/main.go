// Command claims is the spectroauth plugin that computes a Backstage
// identity from the signed-in user's ID-token claims with CEL expressions,
// for installations that keep their users out of Backstage's catalog. See
// README.md for its configuration and package mapping for the logic.
package main

import (
	"github.com/spectroauth/spectroauth/plugins/claims/mapping"
	"github.com/spectroauth/spectroauth/sdk"
)

func main() {
	sdk.Serve(mapping.Plugin())
}
