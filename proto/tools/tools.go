//go:build tools

// Package tools pins the protoc plugins run by ../generate.sh. The versions in
// this module's go.mod must match the runtime libraries in the main go.mod
// (google.golang.org/protobuf exactly), so the generated code is built by the
// same protobuf release it runs against. It is a separate module so that the
// generators never reach the daemon's go.mod.
package tools

import (
	_ "google.golang.org/grpc/cmd/protoc-gen-go-grpc"
	_ "google.golang.org/protobuf/cmd/protoc-gen-go"
)
