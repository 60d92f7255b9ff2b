// Command backstage-catalog is the spectroauth plugin that resolves a
// SpectroCloud user to a Backstage User entity by asking Backstage's catalog,
// as Backstage's own sign-in resolvers do. See README.md for its
// configuration and package catalog for the logic.
package main

import (
	"github.com/spectroauth/spectroauth/plugins/backstage-catalog/catalog"
	"github.com/spectroauth/spectroauth/sdk"
)

func main() {
	sdk.Serve(catalog.Plugin())
}
