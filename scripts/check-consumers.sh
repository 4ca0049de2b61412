#!/usr/bin/env bash
# Proves that the published package loads in every kind of application, with nothing but the
# packed tarball: builds dist/ (ESM + the CommonJS build in dist/cjs), packs it (`npm pack`),
#  1. unpacks it into a temporary application's node_modules, compiles test/consumer/esm-app.mts
#     and cjs-app.cts there with tsc against the packed typings (NodeNext; and cjs-app once more
#     with the classic `module: commonjs` + `moduleResolution: node10` settings of older CommonJS
#     Nest apps), and runs the three builds against the local cluster's replicas (the other
#     packages there are symlinks to the root node_modules); then otel-spans-app.cts, with
#     tracing loaded by `node --require` as OpenTelemetry documents it, checks that
#     @opentelemetry/instrumentation-pg spans carry the port of the node that served each query,
#     and esm-jest.spec.mjs runs as a NestJS 12 app's spec under Jest in native ESM mode;
#  2. installs it into two NestJS 11 apps shaped like the Nest CLI starter (test/consumer/nest11-app
#     with the package.json + lockfile of test/consumer/nest11-jest29 and nest11-jest30: CommonJS,
#     ts-jest, the starter's jest config) and runs each app's own `jest` (`npm test`), whose spec
#     queries the real cluster. Their node_modules are installed with `npm ci` into a cache outside
#     the repository (NESTJS_PG_POOLS_CONSUMER_CACHE, default ~/.cache/nestjs-pg-pools-consumers),
#     once per lockfile;
#  3. extracts the ```ts blocks of README.md's Quickstart (each starts with `// <file>.ts`) into the
#     Jest 30 app, which installed nothing but the README's install line beyond the Nest starter
#     (so the typings of pg must come with the package), and compiles them with `strict: true`.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
work="$(mktemp -d "${TMPDIR:-/tmp}/nestjs-pg-pools-consumers.XXXXXX")"
trap 'rm -rf "$work"' EXIT

npm run --silent build
tarball="$(npm pack --silent --pack-destination "$work" 2>/dev/null | tail -n 1)"
echo "consumers: packed $tarball"

# What users receive: compiled ESM + typings and the documentation README.md links to, nothing else from the repository.
listing="$(tar -tzf "$work/$tarball")"
for required in package/package.json package/dist/index.js package/dist/index.d.ts \
  package/dist/cjs/package.json package/dist/cjs/index.js package/dist/cjs/index.d.ts; do
  grep -qx "$required" <<<"$listing" || { echo "consumers: $required is missing from the tarball" >&2; exit 1; }
done
# Every docs/ file (and BENCHMARKS.md) README.md links to (its links work from node_modules too).
for linked in $(grep -oE '\((docs/[^)#]+|BENCHMARKS\.md)' README.md | cut -c2- | sort -u); do
  required="package/$linked"
  grep -qx "$required" <<<"$listing" || { echo "consumers: $required is missing from the tarball" >&2; exit 1; }
done
if unexpected="$(grep -vE '^package/(package\.json|README\.md|BENCHMARKS\.md|LICENSE|dist/cjs/package\.json|dist/.+\.(js|d\.ts)|docs/[^/]+\.(md|png|yml))$' <<<"$listing")"; then
  echo "consumers: unexpected files in the tarball:" >&2
  echo "$unexpected" >&2
  exit 1
fi

app="$work/app"
mkdir -p "$app/node_modules/nestjs-pg-pools" "$app/src"
tar -xzf "$work/$tarball" -C "$app/node_modules/nestjs-pg-pools" --strip-components=1
# Only the required peers (no @nestjs/terminus: it is optional) plus the library's own dependencies.
mkdir -p "$app/node_modules/@nestjs"
for dep in @nestjs/common @nestjs/core @nestjs/testing @types @opentelemetry pg rxjs reflect-metadata prom-client; do
  ln -s "$root/node_modules/$dep" "$app/node_modules/$dep"
done
cp test/consumer/esm-app.mts test/consumer/cjs-app.cts test/consumer/otel-tracing.cts test/consumer/otel-spans-app.cts "$app/src/"
mkdir -p "$app/classic"
cp test/consumer/cjs-app.cts "$app/classic/cjs-app.ts"
cat >"$app/package.json" <<'JSON'
{ "name": "consumer-app", "private": true }
JSON
cat >"$app/tsconfig.json" <<'JSON'
{
  "compilerOptions": {
    "target": "ES2022",
    "module": "NodeNext",
    "moduleResolution": "NodeNext",
    "strict": true,
    "experimentalDecorators": true,
    "emitDecoratorMetadata": true,
    "skipLibCheck": true,
    "types": ["node"],
    "rootDir": "src",
    "outDir": "out"
  },
  "files": ["src/esm-app.mts", "src/cjs-app.cts", "src/otel-tracing.cts", "src/otel-spans-app.cts"]
}
JSON
cat >"$app/tsconfig.classic.json" <<'JSON'
{
  "compilerOptions": {
    "target": "ES2021",
    "module": "commonjs",
    "moduleResolution": "node10",
    "ignoreDeprecations": "6.0",
    "strict": true,
    "esModuleInterop": true,
    "experimentalDecorators": true,
    "emitDecoratorMetadata": true,
    "skipLibCheck": true,
    "types": ["node"],
    "rootDir": "classic",
    "outDir": "out-classic"
  },
  "files": ["classic/cjs-app.ts"]
}
JSON
node "$root/node_modules/typescript/bin/tsc" -p "$app/tsconfig.json" & nodenext_build=$!
node "$root/node_modules/typescript/bin/tsc" -p "$app/tsconfig.classic.json" & classic_build=$!
wait "$nodenext_build"
wait "$classic_build"
for build in out/cjs-app.cjs out-classic/cjs-app.js; do
  grep -q "require(\"nestjs-pg-pools\")" "$app/$build" \
    || { echo "consumers: $build does not require('nestjs-pg-pools')" >&2; exit 1; }
done

bash scripts/cluster.sh start >/dev/null
set -a
# shellcheck source=cluster.env
source "$root/scripts/cluster.env"
# Same rule as scripts/cluster.sh: PGPOOLS_CLUSTER_OFFSET=N selects the copy whose ports are + N*10.
offset="${PGPOOLS_CLUSTER_OFFSET:-0}"
PG_PRIMARY_PORT=$((PG_PRIMARY_PORT + offset * 10))
PG_REPLICA1_PORT=$((PG_REPLICA1_PORT + offset * 10))
PG_REPLICA2_PORT=$((PG_REPLICA2_PORT + offset * 10))
set +a
cd "$app"
timeout 60 node out/esm-app.mjs
CONSUMER_LABEL='cjs consumer (NodeNext .cts)' timeout 60 node out/cjs-app.cjs
CONSUMER_LABEL='cjs consumer (module commonjs, node10)' timeout 60 node out-classic/cjs-app.js
timeout 60 node --require ./out/otel-tracing.cjs out/otel-spans-app.cjs
# A NestJS 12 app's spec under Jest in native ESM mode (the ES module build, `import` condition).
mkdir -p "$app/jest-esm"
cp "$root/test/consumer/esm-jest.spec.mjs" "$app/jest-esm/"
echo '{ "testEnvironment": "node", "transform": {}, "testMatch": ["<rootDir>/*.spec.mjs"] }' >"$app/jest-esm/jest.config.json"
echo "consumers: NestJS 12 app under Jest (--experimental-vm-modules, no transform)"
timeout 120 node --experimental-vm-modules "$root/node_modules/jest/bin/jest.js" -c jest-esm/jest.config.json --rootDir jest-esm --ci 2>&1 \
  | grep -v 'ExperimentalWarning\|--trace-warnings'

cd "$root"

# 2. NestJS 11 + Jest apps (CommonJS, zero configuration): each runs its own jest.
# Their node_modules live outside the repository (in a cache keyed by the lockfile), so that
# nothing resolves from the repository's own node_modules (@types/pg, prom-client, ...).
consumer_cache="${NESTJS_PG_POOLS_CONSUMER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nestjs-pg-pools-consumers}"
run_jest_app() {
  local source_dir="$root/test/consumer/$1" app_dir="$work/$1" lock_hash install_dir
  lock_hash="$(sha256sum "$source_dir/package-lock.json" | cut -d' ' -f1)"
  install_dir="$consumer_cache/$1-${lock_hash:0:16}"
  if [[ ! -f "$install_dir/.installed" ]]; then
    echo "consumers: installing test/consumer/$1 into $install_dir (npm ci)"
    rm -rf "$install_dir" && mkdir -p "$install_dir"
    cp "$source_dir/package.json" "$source_dir/package-lock.json" "$install_dir/"
    (cd "$install_dir" && npm ci --no-audit --no-fund --loglevel=error)
    touch "$install_dir/.installed"
  fi
  # As a user installs it: the packed tarball plus its own dependencies (not saved to the lockfile).
  (cd "$install_dir" && npm install --no-save --no-audit --no-fund --loglevel=error "$work/$tarball")
  mkdir -p "$app_dir"
  cp "$source_dir/package.json" "$root/test/consumer/nest11-app/tsconfig.json" "$app_dir/"
  cp -r "$root/test/consumer/nest11-app/src" "$app_dir/src"
  ln -s "$install_dir/node_modules" "$app_dir/node_modules"
  local jest_version
  jest_version="$(node -p "require('$install_dir/node_modules/jest/package.json').version")"
  echo "consumers: $1: npm test (jest $jest_version, ts-jest, module commonjs, no extra flags)"
  (cd "$app_dir" && timeout 180 npm test --silent)
}
run_jest_app nest11-jest29
run_jest_app nest11-jest30

# 3. The README quickstart compiles as it stands, strict.
quickstart="$work/nest11-jest30/quickstart"
mkdir -p "$quickstart"
awk -v out="$quickstart" '
  /^## / { in_section = ($0 == "## Quickstart") }
  in_section && /^```ts$/ { in_block = 1; file = ""; next }
  in_block && /^```$/ { in_block = 0; close(out "/" file); next }
  in_block {
    if (file == "") {
      if (!match($0, /^\/\/ [a-z.-]+\.ts/)) { print "consumers: a Quickstart ts block does not start with // <file>.ts: " $0 > "/dev/stderr"; exit 1 }
      file = substr($0, 4, RLENGTH - 3)
    }
    print > (out "/" file)
  }' README.md
blocks="$(ls "$quickstart")"
[[ "$(wc -l <<<"$blocks")" -ge 5 && "$blocks" == *main.ts* ]] \
  || { echo "consumers: expected the README Quickstart to hold at least 5 files including main.ts, got: $blocks" >&2; exit 1; }
cat >"$work/nest11-jest30/tsconfig.quickstart.json" <<'JSON'
{
  "extends": "./tsconfig.json",
  "compilerOptions": { "strict": true, "noImplicitAny": true, "strictBindCallApply": true, "noEmit": true, "incremental": false },
  "include": ["quickstart"]
}
JSON
(cd "$work/nest11-jest30" && timeout 120 node_modules/.bin/tsc -p tsconfig.quickstart.json)
echo "consumers: README quickstart ($(tr '\n' ' ' <<<"$blocks")) compiles with strict: true against the installed package"
