# shellcheck shell=bash
# Sourced by scripts/cluster.sh: the commands on the whole cluster: start, stop, reset, wait, status.

require_initialized() {
  [[ -f $PRIMARY_MARKER ]] || die "no cluster in $CLUSTER_DIR yet; run: $0 start"
}

summary() {
  say "ready: primary $PG_HOST:$PG_PRIMARY_PORT, replica1 :$PG_REPLICA1_PORT, replica2 :$PG_REPLICA2_PORT (streaming)," \
    "pgbouncer :$PGBOUNCER_PORT ($PGBOUNCER_POOL_MODE); user $PG_USER, database $PG_DATABASE"
}

cmd_start() {
  ensure_binaries
  ensure_dirs
  take_lock
  tls_ensure_certs
  do_start
}

do_start() {
  local r
  if [[ -f $PRIMARY_MARKER && -f $(data_dir primary)/PG_VERSION ]]; then
    start_pg primary
  else
    init_primary
  fi
  ensure_slots
  for r in "${REPLICAS[@]}"; do
    [[ -f $(data_dir "$r")/PG_VERSION ]] || init_replica "$r"
    start_pg "$r"
  done
  tls_activate
  start_bouncer
  wait_streaming "${REPLICAS[@]}"
  summary
}

cmd_stop() {
  [[ -d $CLUSTER_DIR ]] || { say "nothing to stop ($CLUSTER_DIR does not exist)"; return 0; }
  take_lock
  do_stop fast
}

do_stop() {
  local mode=$1 n
  stop_bouncer "$mode"
  for n in replica1 replica2 primary; do stop_pg "$n" "$mode"; done
}

cmd_reset() {
  ensure_binaries
  ensure_dirs
  take_lock
  do_stop fast
  say "deleting $CLUSTER_DIR"
  # Everything but the lock file we hold (so no second cluster.sh can slip in).
  find "$CLUSTER_DIR" -mindepth 1 -maxdepth 1 ! -name .lock -exec rm -rf {} +
  ensure_dirs
  tls_ensure_certs
  do_start
}

cmd_wait() {
  require_initialized
  wait_accepting primary
  wait_accepting replica1
  wait_accepting replica2
  wait_bouncer
  wait_streaming "${REPLICAS[@]}"
  summary
}

cmd_status() {
  local n port up role repl all_up=0 rows=""
  printf '%-10s %-6s %-5s %-8s %s\n' NODE PORT STATE ROLE REPLICATION
  if [[ -d $CLUSTER_DIR ]] && pg_accepting primary; then
    rows=$(su_query primary -F '|' -c "SELECT application_name, state,
        pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint
      FROM pg_stat_replication" 2>/dev/null || true)
  fi
  for n in "${ALL_NODES[@]}"; do
    port=$(node_port "$n")
    up=down role=- repl=-
    if [[ $n == pgbouncer ]]; then
      # the admin console answers without a server connection
      if bouncer_pid >/dev/null && bouncer_alive; then
        up=up role=pooler repl="pool_mode=$PGBOUNCER_POOL_MODE -> primary:$PG_PRIMARY_PORT"
        pg_accepting primary || repl="$repl (primary down)"
      elif bouncer_pid >/dev/null; then up=error; fi
    elif pg_accepting "$n"; then
      up=up
      case $(su_query "$n" -c 'SELECT pg_is_in_recovery()' 2>/dev/null || echo '?') in
        f) role=primary ;;
        t) role=replica ;;
        *) role='?' ;;
      esac
      if [[ $n == primary ]]; then
        repl="$(grep -c '|streaming|' <<<"$rows" || true) standby(s) streaming"
      else
        local line
        line=$(grep "^$n|" <<<"$rows" || true)
        if [[ -n $line ]]; then
          IFS='|' read -r _ st lag <<<"$line"
          repl="$st (replay lag ${lag:-?} bytes, slot $n)"
        else
          repl="not connected to primary"
        fi
      fi
    elif pg_pid "$n" >/dev/null 2>&1; then
      up=starting
    fi
    [[ $up == up ]] || all_up=1
    printf '%-10s %-6s %-5s %-8s %s\n' "$n" "$port" "$up" "$role" "$repl"
  done
  return "$all_up"
}
