#!/bin/sh
# make-wrapper.sh OUT [NODE]
#
# Writes OUT, the executable that spectroauthd runs for this plugin (the
# `command:` of its entry under `plugins:`), and prints its SHA-256 digest for
# the entry's `sha256:` and the folders the plugin reads for its
# `readPaths:` (where the kernel has Landlock, a plugin may read nothing
# else outside the system's directories).
#
# Why a generated wrapper. spectroauthd verifies the digest of the command's
# file and executes exactly the bytes it hashed, from a sealed in-memory copy:
# the program it starts does not run from its own path, so it cannot find
# files next to itself, and what it runs must be named by absolute path. The
# digest covers the wrapper alone, so the wrapper pins, by absolute path, the
# node binary (NODE, default: the node on PATH, symbolic links resolved) and
# this folder's plugin.js. Those, and everything plugin.js loads (node_modules/,
# the SDK in sdk/node that it links to, the .proto files the SDK loads), are
# not hashed by the daemon:
# keep them as the daemon's own binary is kept, owned by root and writable by
# no one else. This script refuses to pin files that group or others may
# write.
set -eu

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 OUT [NODE]" >&2
  exit 2
fi
out=$1
node=${2:-$(command -v node || true)}
if [ -z "$node" ]; then
  echo "make-wrapper.sh: no node on PATH; name it: $0 OUT /path/to/node" >&2
  exit 1
fi
node=$(readlink -f "$node")
dir=$(cd "$(dirname "$0")" && pwd -P)
sdk=$(cd "$dir/node_modules/@spectroauth/plugin-sdk" 2>/dev/null && pwd -P || true)
# The .proto files the SDK loads, where it looks for them (sdk/node's
# lib/protocol.js): its own proto/ folder in a published package, else the
# repository's proto/ beside a checkout's sdk/node.
proto=
if [ -n "$sdk" ]; then
  if [ -d "$sdk/proto/spectroauth" ]; then proto=$sdk/proto
  else proto=$(cd "$sdk/../../proto" 2>/dev/null && pwd -P || true); fi
fi

if [ ! -f "$node" ] || [ ! -x "$node" ]; then
  echo "make-wrapper.sh: $node is not an executable file" >&2
  exit 1
fi
if [ ! -d "$dir/node_modules" ]; then
  echo "make-wrapper.sh: $dir/node_modules is missing: run npm ci --ignore-scripts in $dir first" >&2
  exit 1
fi
if [ -z "$sdk" ] || [ ! -d "$sdk/node_modules" ]; then
  echo "make-wrapper.sh: @spectroauth/plugin-sdk or its node_modules is missing: run npm ci --ignore-scripts in $dir/../../sdk/node and in $dir" >&2
  exit 1
fi
if [ -z "$proto" ] || [ ! -f "$proto/spectroauth/plugin/v1/resolver.proto" ]; then
  echo "make-wrapper.sh: the protocol's .proto files are neither in $sdk/proto nor in $sdk/../../proto" >&2
  exit 1
fi
writable=$(find "$node" "$dir/plugin.js" "$dir/package.json" "$dir/node_modules" "$sdk" "$proto" \
  -perm /022 ! -type l -print -quit)
if [ -n "$writable" ]; then
  echo "make-wrapper.sh: $writable is writable by group or others: the daemon would run code anyone may change (chmod go-w)" >&2
  exit 1
fi

# Quote for sh: 'it'\''s'.
q() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }

tmp="$out.tmp.$$"
trap 'rm -f "$tmp"' EXIT
umask 022
cat >"$tmp" <<EOF
#!/bin/sh
# The spectroauth plugin email-domain-node, written by make-wrapper.sh.
# spectroauthd runs exactly these bytes, which pin by absolute path the node
# binary and the program it runs; keep those files writable by their owner only.
exec $(q "$node") $(q "$dir/plugin.js") "\$@"
EOF
chmod 0755 "$tmp"
mv -f "$tmp" "$out"
trap - EXIT
printf 'sha256: %s\n' "$(sha256sum "$out" | cut -d' ' -f1)"
printf 'readPaths: [%s, %s, %s]\n' "$(q "$dir")" "$(q "$sdk")" "$(q "$proto")"
