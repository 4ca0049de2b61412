#!/usr/bin/env bash
# NestJS 11 compatibility run: a shorter subset of the e2e suite, run against the NestJS 11
# packages installed in test/nest11 (jest.config.js maps every @nestjs/* import there when
# NEST_COMPAT=11; rxjs, reflect-metadata and pg stay the root copies).
#
#   bash scripts/nest11.sh [extra jest arguments]
#
# The NestJS 11 packages are installed with `npm ci` from test/nest11/package-lock.json only when
# test/nest11/node_modules is missing or was installed from a different lockfile.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
compat_dir="$root/test/nest11"
lockfile="$compat_dir/package-lock.json"
stamp="$compat_dir/node_modules/.installed-from-lockfile.sha256"

# The files of the subset, as Jest path regexes. A pattern that matches no file is skipped by
# Jest, so the run must pass at least subset_tests tests (scripts/assert-test-count.mjs).
subset=(
  '/compat\.e2e-spec\.ts$'
  '/module-[^/]*\.e2e-spec\.ts$'
  '/routing-[^/]*\.e2e-spec\.ts$'
  '/health-[^/]*\.e2e-spec\.ts$'
  '/metrics-prometheus-interop\.e2e-spec\.ts$'
)
subset_tests=102

lock_hash() { sha256sum "$lockfile" | cut -d' ' -f1; }

if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$(lock_hash)" ]]; then
  echo "nest11: installing the NestJS 11 packages into test/nest11 (npm ci)"
  (cd "$compat_dir" && npm ci --no-audit --no-fund --loglevel=error)
  lock_hash > "$stamp"
fi

core_version="$(node -p "require('$compat_dir/node_modules/@nestjs/core/package.json').version")"
if [[ "$core_version" != 11.* ]]; then
  echo "nest11: test/nest11 holds @nestjs/core $core_version, expected 11.x. Please check test/nest11/package.json." >&2
  exit 1
fi
echo "nest11: running the e2e subset on @nestjs/core $core_version"

cd "$root"
# @willsoto/nestjs-prometheus (CommonJS) loads NestJS 11 under Jest: its test must not be skipped.
counts="$(mktemp "${TMPDIR:-/tmp}/nestjs-pg-pools-nest11.XXXXXX.json")"
trap 'rm -f "$counts"' EXIT
NEST_COMPAT=11 PGPOOLS_REQUIRE_WILLSOTO=1 node --experimental-vm-modules node_modules/jest/bin/jest.js \
  --selectProjects e2e --runInBand --json --outputFile="$counts" "$@" -- "${subset[@]}"
# Extra arguments (a filter) make a smaller run on purpose; the count is checked on the full subset.
if [[ $# -eq 0 ]]; then
  node scripts/assert-test-count.mjs "$counts" "$subset_tests" "nest11 e2e subset"
fi
