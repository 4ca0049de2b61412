# shellcheck shell=bash
# Sourced by scripts/cluster.sh: the commands on one node: node-stop, node-start, node-kill,
# node-restart, psql.

cmd_node_stop() {
  local node=$1 mode=${2:-fast}
  node_port "$node" >/dev/null
  case $mode in smart | fast | immediate) ;; *) die "unknown stop mode '$mode' (smart|fast|immediate)" ;; esac
  require_initialized
  take_lock
  if [[ $node == pgbouncer ]]; then stop_bouncer "$mode"; else stop_pg "$node" "$mode"; fi
}

cmd_node_start() {
  local node=$1
  node_port "$node" >/dev/null
  require_initialized
  ensure_binaries
  ensure_dirs
  take_lock
  do_node_start "$node"
}

do_node_start() {
  local node=$1
  if [[ $node == pgbouncer ]]; then
    start_bouncer
  else
    start_pg "$node"
    if is_replica "$node"; then
      ensure_slots
      wait_streaming "$node"
    fi
  fi
  say "$node is up"
}

cmd_node_kill() {
  local node=$1 pid
  node_port "$node" >/dev/null
  require_initialized
  take_lock
  if ! pid=$(node_pid "$node"); then
    say "$node is not running"
    return 0
  fi
  kill9_and_wait "$node" "$pid"
}

cmd_node_restart() {
  local node=$1 mode=${2:-fast}
  cmd_node_stop "$node" "$mode"
  do_node_start "$node"
}

cmd_psql() {
  local node=$1
  shift
  node_port "$node" >/dev/null
  if [[ $node == pgbouncer ]]; then
    # PgBouncer knows only the app user (the superuser is not in its auth_file).
    PGPASSWORD="$PG_PASSWORD" exec "$PG_BIN/psql" -X -h "$SOCKET_DIR" -p "$PGBOUNCER_PORT" \
      -U "$PG_USER" -d "$PG_DATABASE" "$@"
  fi
  exec "$PG_BIN/psql" -X -h "$SOCKET_DIR" -p "$(node_port "$node")" -U "$PG_SUPERUSER" -d "$PG_DATABASE" "$@"
}
