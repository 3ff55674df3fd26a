#!/usr/bin/env bash
# Runs the protocol tests with the CLI under Node 22 and 24 (the npm registry's
# `node` package ships the binaries), since the host machine runs Node 20.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
for major in 22 24; do
  mkdir -p "$dir/$major"
  (cd "$dir/$major" && npm install --no-save --no-audit --no-fund --silent "node@$major" >/dev/null)
  bin="$dir/$major/node_modules/.bin/node"
  echo "=== CLI on $("$bin" --version)"
  "$bin" bin/run.js --version
  OPS_TEST_NODE="$bin" npx mocha --no-config --node-option import=tsx --require test/helpers/hooks.ts \
    --timeout 120000 --exit test/protocol.test.ts
done
