// Package pluginv1 is the generated Go code of the spectroauth plugin wire
// protocol, protobuf package spectroauth.plugin.v1 (protocol version 1). The
// .proto files next to it are the contract; regenerate with proto/generate.sh.
//
// Plugin authors do not use this package: they write against
// github.com/spectroauth/spectroauth/sdk, which hides it behind plain Go types.
package pluginv1
