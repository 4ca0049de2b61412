#!/usr/bin/env bash
# Installs Debian's `chromium` package for the dashboard browser test (playwright-core drives it
# through executablePath; no browser is ever downloaded by npm). Idempotent: does nothing when
# the binary is already there. Needs root (apt-get); bounded by timeouts so CI cannot hang.
set -euo pipefail

CHROMIUM_BIN="${CHROMIUM_BIN:-/usr/bin/chromium}"

if [[ -x "$CHROMIUM_BIN" ]]; then
  echo "chromium already installed at $CHROMIUM_BIN"
  exit 0
fi

if [[ "$(id -u)" -ne 0 ]]; then
  echo "Cannot install chromium because this script is not running as root. Please make sure that you run it as root (or install the Debian package 'chromium' yourself)." >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
APT_OPTS=(-o Acquire::Retries=3 -o Acquire::http::Timeout=60 -o Dpkg::Use-Pty=0)

timeout 600 apt-get "${APT_OPTS[@]}" update -q
timeout 1200 apt-get "${APT_OPTS[@]}" install -y -q --no-install-recommends chromium fonts-dejavu-core

if [[ ! -x "$CHROMIUM_BIN" ]]; then
  echo "Cannot use chromium because $CHROMIUM_BIN is missing after apt-get install. Please make sure that the Debian package 'chromium' is available for this release." >&2
  exit 1
fi
"$CHROMIUM_BIN" --version || true
