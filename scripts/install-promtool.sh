#!/usr/bin/env bash
# Installs `promtool` (Debian package `prometheus`) for the test that lints the /metrics scrape
# output with `promtool check metrics`. Idempotent: does nothing when promtool is already there.
# Needs root (apt-get); bounded by timeouts so CI cannot hang.
set -euo pipefail

PROMTOOL_BIN="${PROMTOOL_BIN:-/usr/bin/promtool}"

if [[ -x "$PROMTOOL_BIN" ]]; then
  echo "promtool already installed at $PROMTOOL_BIN"
  exit 0
fi

if [[ "$(id -u)" -ne 0 ]]; then
  echo "Cannot install promtool because this script is not running as root. Please make sure that you run it as root (or install the Debian package 'prometheus' yourself)." >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
APT_OPTS=(-o Acquire::Retries=3 -o Acquire::http::Timeout=60 -o Dpkg::Use-Pty=0 -o DPkg::Lock::Timeout=600)

timeout 600 apt-get "${APT_OPTS[@]}" update -q
# The package starts no service in a container without systemd; only the promtool binary is used.
timeout 1200 apt-get "${APT_OPTS[@]}" install -y -q --no-install-recommends prometheus

if [[ ! -x "$PROMTOOL_BIN" ]]; then
  echo "Cannot use promtool because $PROMTOOL_BIN is missing after apt-get install. Please make sure that the Debian package 'prometheus' is available for this release." >&2
  exit 1
fi
"$PROMTOOL_BIN" --version | head -n 1 || true
