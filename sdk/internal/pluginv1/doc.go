// Package pluginv1 is the generated Go code of the spectroauth plugin wire
// protocol, protobuf package spectroauth.plugin.v1 (protocol version 1). The
// .proto files in proto/spectroauth/plugin/v1 of the repository are the
// contract; regenerate with proto/generate.sh (make proto).
//
// The package is internal to the SDK module: plugin authors write against
// package sdk's plain Go types, and the daemon talks to plugins through
// sdk/pluginclient. Package sdk/internal/wire holds the one pair of
// converters between these messages and the SDK's types.
package pluginv1
