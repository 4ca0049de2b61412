#!/usr/bin/env bash
# Generates the Prisma clients of the sample app and of the e2e tests (prisma-client generator,
# Rust-free: the client runs on @prisma/adapter-pg with no engine) into git-ignored folders.
# Offline: `prisma generate` never runs the schema engine (only migrations do), so
# PRISMA_SCHEMA_ENGINE_BINARY points at an empty placeholder file and nothing is downloaded.
# A client newer than its schema is kept. Run by `npm run typecheck` / `npm run test:e2e` (pre-scripts)
# and by the e2e global setup.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

placeholder="node_modules/.cache/nestjs-pg-pools/prisma-schema-engine-placeholder"
mkdir -p "$(dirname "$placeholder")"
[ -f "$placeholder" ] || : >"$placeholder"

# schema file → the client it generates (the `output` of its generator block)
generate() {
  local schema="$1" client="$2"
  if [ -f "$client" ] && [ "$client" -nt "$schema" ]; then return 0; fi
  local log
  if ! log="$(PRISMA_SCHEMA_ENGINE_BINARY="$root/$placeholder" CHECKPOINT_DISABLE=1 PRISMA_HIDE_UPDATE_MESSAGE=1 \
    node node_modules/prisma/build/index.js generate --schema "$schema" 2>&1)"; then
    echo "$log" >&2
    echo "[prisma] cannot generate the client of $schema (see above)" >&2
    return 1
  fi
  touch "$client"
  echo "[prisma] generated $(dirname "$client") from $schema"
}

generate test/prisma/schema.prisma test/prisma/generated/client.ts
generate sample-app/prisma/schema.prisma sample-app/src/query-builders/prisma/generated/client.ts
