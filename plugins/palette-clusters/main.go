// Command palette-clusters is the spectroauth cluster source that discovers
// Kubernetes clusters from SpectroCloud Palette's REST API, with each
// cluster's API server endpoint and CA taken from its user kubeconfig. See
// package palette for the configuration and options.
package main

import (
	"github.com/spectroauth/spectroauth/plugins/palette-clusters/palette"
	"github.com/spectroauth/spectroauth/sdk"
)

func main() {
	sdk.Serve(palette.Plugin())
}
