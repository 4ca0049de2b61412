#!/usr/bin/env bash
# Local PostgreSQL 15 test cluster for nestjs-pg-pools:
#   primary (read/write) + replica1 + replica2 (streaming hot standbys, each with
#   its own physical replication slot) + PgBouncer (transaction pooling) in
#   front of the primary. All settings come from scripts/cluster.env; all state
#   (data dirs, logs, sockets, pgbouncer config/pidfile) lives in $CLUSTER_DIR.
#
# Usage: scripts/cluster.sh COMMAND [ARGS]
#   start                    create what is missing, start what is down, then wait
#                            until the primary accepts connections, both replicas
#                            stream and pgbouncer answers a query (idempotent)
#   stop                     stop everything (fast shutdown)
#   status                   one line per node; exit 0 only if all nodes are up
#   reset                    stop + delete $CLUSTER_DIR + start
#   wait                     wait (bounded) for the state `start` ends in
#   node-stop NAME [MODE]    pg_ctl stop -m MODE (smart|fast|immediate; default fast)
#   node-start NAME          start NAME and wait until it accepts connections
#                            (replicas: and stream again)
#   node-kill NAME           kill -9 the postmaster (pgbouncer: the process)
#   node-restart NAME [MODE] node-stop + node-start
#   psql NAME [ARGS...]      psql to NAME as the superuser over the unix socket
#                            (pgbouncer: as the app user; `-d pgbouncer` = console)
#   promote NAME             pg_ctl promote NAME (a standby), then wait until it answers
#                            pg_is_in_recovery() = false (idempotent: a primary is left as is)
#   demote NAME SOURCE       rebuild NAME as a streaming standby of SOURCE (the current
#                            primary): stop NAME, pg_basebackup from SOURCE (slot NAME on
#                            SOURCE), start, wait until it streams (skipped if it already does)
#   rebuild                  return to the initial topology: primary = the original primary
#                            (with the newest data: a promoted node's WAL is taken over by a
#                            switchover), replica1 + replica2 streaming from it, rebuilt with
#                            pg_basebackup where they do not (idempotent, bounded)
# NAME is one of: primary replica1 replica2 pgbouncer (promote/demote/rebuild: no pgbouncer)
#
# Run as root, every server process runs as the `postgres` OS user (runuser);
# run as a normal user, they run as that user. Never touches the system
# PostgreSQL on 5432. Pure bash, no Node. This file reads the command; the work is done by
# the parts in scripts/cluster/, one per concern: common.sh (settings, paths, helpers,
# preflight), tls.sh, postgres.sh (one node), pgbouncer.sh, lifecycle.sh (start, stop, reset,
# wait, status), nodes.sh (node-*, psql) and failover.sh (promote, demote, rebuild).
set -euo pipefail

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd -- "$SCRIPT_DIR/.." && pwd -P)"
# The parts, by concern (each only defines functions, except common.sh, which reads the settings).
for part in common tls postgres pgbouncer lifecycle nodes failover; do
  # shellcheck source=/dev/null
  source "$SCRIPT_DIR/cluster/$part.sh"
done

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
}

need_node_arg() {
  [[ $# -ge 1 && -n $1 ]] || die "missing NAME (one of: ${ALL_NODES[*]})"
  is_node "$1" || die "unknown node '$1' (expected: ${ALL_NODES[*]})"
}

main() {
  local cmd=${1:-}
  shift || true
  case $cmd in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    reset) cmd_reset ;;
    wait) cmd_wait ;;
    node-stop) need_node_arg "$@"; cmd_node_stop "$@" ;;
    node-start) need_node_arg "$@"; cmd_node_start "$1" ;;
    node-kill) need_node_arg "$@"; cmd_node_kill "$1" ;;
    node-restart) need_node_arg "$@"; cmd_node_restart "$@" ;;
    psql) need_node_arg "$@"; cmd_psql "$@" ;;
    promote) need_node_arg "$@"; cmd_promote "$1" ;;
    demote) need_node_arg "$@"; cmd_demote "$@" ;;
    rebuild) cmd_rebuild ;;
    -h | --help | help) usage ;;
    "") usage >&2; exit 2 ;;
    *) warn "unknown command '$cmd'"; usage >&2; exit 2 ;;
  esac
}

main "$@"
