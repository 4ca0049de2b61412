#!/usr/bin/env bash
# Proves that the published package loads in both kinds of applications, with nothing but the
# packed tarball: builds dist/, packs it (`npm pack`), unpacks it into a temporary application's
# node_modules, compiles test/consumer/esm-app.mts and cjs-app.cts there with tsc against the
# packed typings (NodeNext; and cjs-app once more with the classic `module: commonjs` +
# `moduleResolution: node10` settings of older CommonJS Nest apps), and runs the three builds
# against the local cluster's replicas.
# Offline: the other packages (NestJS, pg, rxjs, ...) are symlinks to the root node_modules.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
work="$(mktemp -d "${TMPDIR:-/tmp}/nestjs-pg-pools-consumers.XXXXXX")"
trap 'rm -rf "$work"' EXIT

npm run --silent build
tarball="$(npm pack --silent --pack-destination "$work" 2>/dev/null | tail -n 1)"
echo "consumers: packed $tarball"

# What users receive: compiled ESM + typings, nothing else from the repository.
listing="$(tar -tzf "$work/$tarball")"
for required in package/package.json package/dist/index.js package/dist/index.d.ts; do
  grep -qx "$required" <<<"$listing" || { echo "consumers: $required is missing from the tarball" >&2; exit 1; }
done
if unexpected="$(grep -vE '^package/(package\.json|README\.md|LICENSE|dist/.+\.(js|d\.ts))$' <<<"$listing")"; then
  echo "consumers: unexpected files in the tarball:" >&2
  echo "$unexpected" >&2
  exit 1
fi

app="$work/app"
mkdir -p "$app/node_modules/nestjs-pg-pools" "$app/src"
tar -xzf "$work/$tarball" -C "$app/node_modules/nestjs-pg-pools" --strip-components=1
# Only the required peers (no @nestjs/terminus: it is optional) plus the library's own dependencies.
mkdir -p "$app/node_modules/@nestjs"
for dep in @nestjs/common @nestjs/core @types pg rxjs reflect-metadata prom-client; do
  ln -s "$root/node_modules/$dep" "$app/node_modules/$dep"
done
cp test/consumer/esm-app.mts test/consumer/cjs-app.cts "$app/src/"
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
  "files": ["src/esm-app.mts", "src/cjs-app.cts"]
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
