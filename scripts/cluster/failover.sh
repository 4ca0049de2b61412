# shellcheck shell=bash
# Sourced by scripts/cluster.sh: the failover steps: promote, demote, rebuild.

# "t" / "f" from pg_is_in_recovery() on NAME, or "" when it does not answer.
in_recovery() { su_query "$1" -c 'SELECT pg_is_in_recovery()' 2>/dev/null || true; }

# 0 when NAME shows as a streaming standby in pg_stat_replication on SOURCE.
streams_from() {
  [[ $(su_query "$2" -c "SELECT count(*) FROM pg_stat_replication
    WHERE state = 'streaming' AND application_name = '$1'" 2>/dev/null || echo 0) == 1 ]]
}

need_pg_node() {
  [[ $1 == primary || $1 == replica1 || $1 == replica2 ]] || die "unknown PostgreSQL node '$1' (expected: ${PG_NODES[*]})"
}

do_promote() {
  local node=$1 deadline
  start_pg "$node"
  if [[ $(in_recovery "$node") == f ]]; then
    say "$node is already a primary"
    return 0
  fi
  say "promoting $node"
  as_pg "$PG_BIN/pg_ctl" promote -D "$(data_dir "$node")" -w -t "$CLUSTER_WAIT_SECONDS" -s ||
    { show_log_tail "$node"; die "pg_ctl promote $node failed"; }
  deadline=$(($(now_s) + CLUSTER_WAIT_SECONDS))
  until [[ $(in_recovery "$node") == f ]]; do
    (($(now_s) >= deadline)) && { show_log_tail "$node"; die "$node still in recovery ${CLUSTER_WAIT_SECONDS}s after pg_ctl promote"; }
    sleep 0.1
  done
  say "$node is a primary (pg_is_in_recovery() = false)"
}

# Rebuild NAME as a streaming standby of SOURCE with pg_basebackup (slot NAME on SOURCE).
do_demote() {
  local node=$1 src=$2 dir
  [[ $node != "$src" ]] || die "cannot make $node a standby of itself"
  start_pg "$src"
  [[ $(in_recovery "$src") == f ]] || die "$src is not a primary (pg_is_in_recovery() is not false); promote it first"
  if pg_pid "$node" >/dev/null && [[ $(in_recovery "$node") == t ]] && streams_from "$node" "$src"; then
    say "$node already streams from $src"
    return 0
  fi
  stop_pg "$node" immediate
  su_query "$src" -c "SELECT pg_create_physical_replication_slot('$node', true)
    WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = '$node')" >/dev/null
  basebackup_to_tmp "$node" "$src"
  # A base backup of a former standby still names that standby's upstream first; -R appended
  # the new primary_conninfo/primary_slot_name after it, and the last setting wins.
  dir=$(data_dir "$node")
  rm -rf "$dir"
  mv "$dir.tmp" "$dir"
  start_pg "$node"
  wait_streaming_from "$src" "$node"
  say "$node is a standby of $src"
}

# Back to the initial topology: primary is the primary (taking over from a promoted node by a
# lossless switchover: it becomes that node's standby, the node is shut down cleanly, which
# sends it all WAL, then it is promoted), replica1 + replica2 stream from it.
do_rebuild() {
  local n src="" r
  for n in "${PG_NODES[@]}"; do
    [[ -f $(data_dir "$n")/PG_VERSION ]] || { say "$n has no data directory: full reset"; do_reset_locked; return 0; }
    pg_pid "$n" >/dev/null || start_pg "$n" || true
  done
  # The node to take data from: a promoted replica wins over the original primary (it holds
  # the writes acknowledged after the failover); a split-brain primary's extra writes are discarded.
  for n in replica1 replica2 primary; do
    if [[ $(in_recovery "$n") == f ]]; then src=$n; break; fi
  done
  [[ -n $src ]] || { say "no node answers as a primary: full reset"; do_reset_locked; return 0; }
  if [[ $src != primary ]]; then
    say "switchover: $src -> primary"
    do_demote primary "$src"
    stop_pg "$src" fast
    do_promote primary
  fi
  ensure_slots
  for r in "${REPLICAS[@]}"; do
    if [[ $(in_recovery "$r") == f ]]; then stop_pg "$r" immediate; fi
    do_demote "$r" primary
  done
  # Slots that a switchover left behind (e.g. 'primary' on a former primary) are removed.
  su_query primary -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
    WHERE slot_name NOT IN ('replica1', 'replica2') AND NOT active" >/dev/null
  start_bouncer
  wait_streaming "${REPLICAS[@]}"
  summary
}

do_reset_locked() {
  do_stop immediate
  find "$CLUSTER_DIR" -mindepth 1 -maxdepth 1 ! -name .lock -exec rm -rf {} +
  ensure_dirs
  do_start
}

cmd_promote() {
  need_pg_node "$1"
  require_initialized
  take_lock
  do_promote "$1"
}

cmd_demote() {
  [[ $# -ge 2 ]] || die "usage: $0 demote NAME SOURCE (e.g. demote primary replica1)"
  need_pg_node "$1"
  need_pg_node "$2"
  require_initialized
  take_lock
  do_demote "$1" "$2"
}

cmd_rebuild() {
  require_initialized
  ensure_binaries
  ensure_dirs
  take_lock
  do_rebuild
}
