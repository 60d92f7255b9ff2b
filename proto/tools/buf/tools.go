//go:build tools

// Package tools pins buf, the .proto compiler run by ../../generate.sh. buf
// sits in a module of its own because it needs a newer google.golang.org/protobuf
// than the one the generated code is built with (see ../go.mod).
package tools

import (
	_ "github.com/bufbuild/buf/cmd/buf"
)
