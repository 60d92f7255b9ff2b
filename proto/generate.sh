#!/usr/bin/env bash
# Regenerates the Go code of the plugin wire protocol from the .proto files.
#
#   proto/generate.sh            rewrite the generated files in the SDK module
#                                (sdk/internal/pluginv1, from the files' go_package)
#   proto/generate.sh OUTDIR     write them under OUTDIR instead, as if it were the
#                                SDK module's directory (used by check-generated.sh)
#
# Reproducible: buf, protoc-gen-go and protoc-gen-go-grpc are built from the
# versions pinned in tools/buf/go.mod and tools/go.mod (the only network use is
# the Go module proxy, for the first build), and buf.gen.yaml uses only these
# local plugins. The binaries are cached in tools/bin/ (git-ignored).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here"
out=${1:-}
if [ -n "$out" ]; then
  mkdir -p "$out"
  out=$(cd "$out" && pwd)
fi

bin="$here/tools/bin"
mkdir -p "$bin"
# `go build` relinks only when a pinned version or the toolchain changed.
(cd tools && go build -o "$bin/" google.golang.org/protobuf/cmd/protoc-gen-go google.golang.org/grpc/cmd/protoc-gen-go-grpc)
(cd tools/buf && go build -o "$bin/buf" github.com/bufbuild/buf/cmd/buf)
export PATH="$bin:$PATH"

buf lint
if [ -z "$out" ]; then
  out=$(cd ../sdk && pwd)
  # Start clean so that code of a removed .proto file does not linger.
  find "$out/internal" -name '*.pb.go' -delete
fi
buf generate --output "$out"

