#!/usr/bin/env bash
# Fails when the committed generated code of the plugin wire protocol is not
# what proto/generate.sh produces from the committed .proto files, or when the
# generator's protobuf version drifts from the runtime's.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here"

# protoc-gen-go must be the release of google.golang.org/protobuf the SDK
# module (where the generated code lives) requires, or the generated code may
# call runtime APIs that do not exist.
version() { awk -v m="$1" '$1 == m || ($1 == "require" && $2 == m) { print ($1 == m ? $2 : $3); exit }' "$2"; }
want=$(version google.golang.org/protobuf ../sdk/go.mod)
got=$(version google.golang.org/protobuf tools/go.mod)
if [ -z "$want" ] || [ -z "$got" ]; then
  echo "cannot find google.golang.org/protobuf in sdk/go.mod or proto/tools/go.mod" >&2
  exit 1
fi
if [ "$want" != "$got" ]; then
  echo "proto/tools/go.mod pins google.golang.org/protobuf $got but sdk/go.mod uses $want:" >&2
  echo "  (cd proto/tools && go get google.golang.org/protobuf@$want && go mod tidy) && proto/generate.sh" >&2
  exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
./generate.sh "$tmp/gen"

stale=0
# Compare the sets of generated files and their contents.
(cd "$tmp/gen" && find . -name '*.pb.go' | sort) > "$tmp/want.list"
# The generated code is in the SDK module; none may be left in proto/.
find . -path ./tools -prune -o -name '*.pb.go' -print | sed 's#^#proto/#' > "$tmp/stray.list"
if [ -s "$tmp/stray.list" ]; then
  echo "generated code left in proto/ (it belongs in sdk/internal):" >&2
  cat "$tmp/stray.list" >&2
  stale=1
fi
(cd ../sdk && find . -path ./node -prune -o -name '*.pb.go' -print | sort) > "$tmp/have.list"
if ! diff -u "$tmp/have.list" "$tmp/want.list"; then
  stale=1
fi
while read -r f; do
  if [ -f "../sdk/$f" ] && ! diff -u "../sdk/$f" "$tmp/gen/$f"; then
    stale=1
  fi
done < "$tmp/want.list"

if [ "$stale" -ne 0 ]; then
  echo "the generated code in sdk/internal is stale: run proto/generate.sh (make proto) and commit the result" >&2
  exit 1
fi
echo "sdk/internal: the generated code of proto/ is up to date"
