#!/usr/bin/env bash
# Local Patroni test cluster for nestjs-pg-pools: etcd (one member) + three
# Patroni-managed PostgreSQL 15 nodes (node1..node3, asynchronous streaming
# replication) + HAProxy in front (read-write port: backends whose Patroni REST
# answers 200 on /primary; read-only port: 200 on /replica). Everything on
# loopback; settings in scripts/patroni.env; all state in $PATRONI_DIR.
#
# Usage: scripts/patroni.sh COMMAND [ARGS]
#   start              install what is missing (apt-get), create what is missing, start what
#                      is down, then wait until one leader runs, both other nodes stream from
#                      it, the app role exists and both HAProxy ports answer (idempotent)
#   stop               stop HAProxy, the three Patroni nodes (each stops its PostgreSQL) and
#                      etcd, each by PID, bounded waits (SIGKILL after them)
#   status             one line per process; exit 0 only if everything is up
#   leader             print the leader's name and PostgreSQL port ("node2 58002")
#   switchover [NODE]  planned switchover (patronictl) to NODE (default: the first replica),
#                      then wait until NODE leads and the old leader streams from it
#   failover           SIGKILL the leader's Patroni and postmaster; wait until Patroni
#                      publishes a new leader; print "killed NODE, new leader NODE after N ms"
#   rejoin [NODE]      start the Patroni of NODE (default: every node that is down) and wait
#                      until it streams from the leader (pg_rewind / re-clone as Patroni decides)
#   sync on|off        Patroni's synchronous_mode (patronictl edit-config), then wait until the
#                      leader's synchronous_standby_names shows it
#   reset              stop + delete $PATRONI_DIR + start
#   psql NODE [ARGS]   psql to NODE as the superuser over its unix socket
#   env                print the settings (KEY=value), ports included
#
# Run as root: every server (etcd, Patroni, PostgreSQL, HAProxy) runs as the
# `postgres` OS user (runuser). Pure bash (python3 from Patroni's package reads JSON).
set -euo pipefail

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd -- "$SCRIPT_DIR/.." && pwd -P)"
# shellcheck source-path=SCRIPTDIR source=patroni.env
source "$SCRIPT_DIR/patroni.env"

case "$PATRONI_DIR" in
  /*) ;;
  *) PATRONI_DIR="$REPO_ROOT/$PATRONI_DIR" ;;
esac
LOG_DIR="$PATRONI_DIR/logs"
RUN_DIR="$PATRONI_DIR/run"
ETCD_DATA="$PATRONI_DIR/etcd"
HAPROXY_CFG="$PATRONI_DIR/haproxy.cfg"
HAPROXY_PIDFILE="$RUN_DIR/haproxy.pid"
ETCD_PIDFILE="$RUN_DIR/etcd.pid"
LOCK_FILE="$PATRONI_DIR/.lock"
NODES=(node1 node2 node3)
OS_USER=postgres
# Patroni's own interpreter (a python3 earlier on PATH may lack its modules).
PY=/usr/bin/python3
IS_ROOT=0
[[ $EUID -eq 0 ]] && IS_ROOT=1
# shellcheck source-path=SCRIPTDIR source=process-helpers.sh
source "$SCRIPT_DIR/process-helpers.sh"

export PGCONNECT_TIMEOUT=3
unset PGHOST PGHOSTADDR PGPORT PGUSER PGDATABASE PGPASSWORD PGPASSFILE PGSERVICE \
  PGOPTIONS PGSSLMODE PGTARGETSESSIONATTRS PGAPPNAME 2>/dev/null || true

say() { printf '[patroni] %s\n' "$*"; }
die() {
  printf '[patroni] ERROR: %s\n' "$*" >&2
  exit 1
}
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; }

node_index() {
  case $1 in
    node1) echo 1 ;; node2) echo 2 ;; node3) echo 3 ;;
    *) die "unknown node '$1' (expected: ${NODES[*]})" ;;
  esac
}
pg_port() { local v="PATRONI_PG_PORT$(node_index "$1")"; echo "${!v}"; }
rest_port() { local v="PATRONI_REST_PORT$(node_index "$1")"; echo "${!v}"; }
node_dir() { echo "$PATRONI_DIR/$1"; }
data_dir() { echo "$PATRONI_DIR/$1/data"; }
socket_dir() { echo "$PATRONI_DIR/$1/socket"; }
patroni_cfg() { echo "$PATRONI_DIR/$1/patroni.yml"; }
patroni_pidfile() { echo "$RUN_DIR/$1.patroni.pid"; }
now_ms() { date +%s%3N; }

etcd_pid() { live_pid "$ETCD_PIDFILE" etcd; }
haproxy_pid() { live_pid "$HAPROXY_PIDFILE" haproxy; }
patroni_pid() { live_pid "$(patroni_pidfile "$1")" 'patroni|python3.*'; }
postmaster_pid() { live_pid "$(data_dir "$1")/postmaster.pid" 'postgres|postmaster'; }

# SIGTERM PID, wait up to SECONDS for it to exit, then SIGKILL (bounded).
stop_pid() {
  local pid=$1 what=$2 secs=${3:-15} deadline
  kill -TERM "$pid" 2>/dev/null || return 0
  deadline=$(($(date +%s) + secs))
  while kill -0 "$pid" 2>/dev/null; do
    if (($(date +%s) >= deadline)); then
      say "$what (pid $pid) did not stop within ${secs}s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.1
  done
}

# GET http://127.0.0.1:REST_PORT/PATH; prints the body, fails unless HTTP 200.
rest_get() {
  "$PY" - "$1" "$2" <<'PY'
import sys, urllib.request, urllib.error
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/{sys.argv[2]}", timeout=2) as r:
        sys.stdout.write(r.read().decode())
except Exception:
    sys.exit(1)
PY
}

# The leader's name per Patroni (any node's REST /cluster), or failure.
leader_name() {
  local n body
  for n in "${NODES[@]}"; do
    body=$(rest_get "$(rest_port "$n")" cluster 2>/dev/null) || continue
    "$PY" -c '
import json, sys
m = [x["name"] for x in json.loads(sys.argv[1]).get("members", []) if x.get("role") == "leader" and x.get("state") == "running"]
sys.exit(0 if m and print(m[0]) is None else 1)' "$body" && return 0
  done
  return 1
}

su_query() {
  local node=$1
  shift
  "$PG_BIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$(socket_dir "$node")" -p "$(pg_port "$node")" -U "$PG_SUPERUSER" -d postgres "$@"
}

# 0 when NODE is a running replica streaming from the current leader.
streaming() {
  local node=$1 leader=$2 st
  st=$(su_query "$node" -c "SELECT status || ' ' || sender_port FROM pg_stat_wal_receiver" 2>/dev/null) || return 1
  [[ $st == "streaming $(pg_port "$leader")" ]]
}

wait_until() {
  local what=$1 secs=$2 deadline
  shift 2
  deadline=$(($(date +%s) + secs))
  until "$@"; do
    (($(date +%s) < deadline)) || return 1
    sleep 0.1
  done
}

ensure_packages() {
  local need=()
  [[ -x $PG_BIN/postgres ]] || need+=(postgresql-15)
  command -v patroni >/dev/null || need+=(patroni)
  command -v etcd >/dev/null || need+=(etcd-server)
  "$PY" -c 'import etcd' 2>/dev/null || need+=(python3-etcd)
  command -v haproxy >/dev/null || need+=(haproxy)
  ((${#need[@]})) || return 0
  ((IS_ROOT)) || die "missing ${need[*]}; install with: sudo apt-get update && sudo apt-get install -y ${need[*]}"
  say "installing missing packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${need[@]}"
}

ensure_dirs() {
  local d n
  for d in "$PATRONI_DIR" "$LOG_DIR" "$RUN_DIR" "$ETCD_DATA"; do
    [[ -d $d ]] || mkdir -p "$d"
  done
  for n in "${NODES[@]}"; do mkdir -p "$(node_dir "$n")" "$(socket_dir "$n")"; done
  chmod 0700 "$ETCD_DATA"
  ((IS_ROOT)) && chown -R "$OS_USER:$OS_USER" "$PATRONI_DIR"
  if ((IS_ROOT)) && ! runuser -u "$OS_USER" -- test -x "$PATRONI_DIR" -a -w "$PATRONI_DIR"; then
    die "the '$OS_USER' OS user cannot reach $PATRONI_DIR (a parent directory lacks o+x)"
  fi
}

take_lock() {
  exec 9>>"$LOCK_FILE"
  flock -w 600 9 || die "could not lock $LOCK_FILE within 600 s"
}

write_patroni_cfg() {
  local n=$1
  write_file "$(patroni_cfg "$n")" 0600 <<EOF
scope: $PATRONI_SCOPE
name: $n
log:
  level: INFO
restapi:
  listen: $PATRONI_HOST:$(rest_port "$n")
  connect_address: $PATRONI_HOST:$(rest_port "$n")
etcd3:
  hosts: $PATRONI_HOST:$ETCD_CLIENT_PORT
bootstrap:
  dcs:
    ttl: $PATRONI_TTL
    loop_wait: $PATRONI_LOOP_WAIT
    retry_timeout: $PATRONI_RETRY_TIMEOUT
    maximum_lag_on_failover: 1048576
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        max_connections: $PG_MAX_CONNECTIONS
        wal_level: replica
        hot_standby: "on"
        wal_log_hints: "on"
        max_wal_senders: 10
        max_replication_slots: 10
        wal_keep_size: 128MB
        fsync: "off"
        full_page_writes: "on"
  initdb:
    - encoding: UTF8
    - auth-local: trust
    - auth-host: scram-sha-256
postgresql:
  listen: $PATRONI_HOST:$(pg_port "$n")
  connect_address: $PATRONI_HOST:$(pg_port "$n")
  data_dir: $(data_dir "$n")
  bin_dir: $PG_BIN
  pgpass: $(node_dir "$n")/pgpass
  use_unix_socket: true
  basebackup:
    - checkpoint: fast
  authentication:
    superuser:
      username: $PG_SUPERUSER
      password: $PG_SUPERUSER_PASSWORD
    replication:
      username: $PG_REPLICATION_USER
      password: $PG_REPLICATION_PASSWORD
    rewind:
      username: $PG_SUPERUSER
      password: $PG_SUPERUSER_PASSWORD
  parameters:
    unix_socket_directories: '$(socket_dir "$n")'
    password_encryption: scram-sha-256
  pg_hba:
    - local all all trust
    - host replication $PG_REPLICATION_USER 127.0.0.1/32 scram-sha-256
    - host all all 127.0.0.1/32 scram-sha-256
tags:
  nofailover: false
  noloadbalance: false
  clonefrom: false
  nosync: false
EOF
}

# HAProxy as Patroni's documentation sets it up, with quicker checks for a test cluster
# (every 500 ms, down after 2 failures, up after 1 success) and sessions to a backend that
# failed its check shut down.
write_haproxy_cfg() {
  local n servers_rw="" servers_ro=""
  for n in "${NODES[@]}"; do
    servers_rw+="  server $n $PATRONI_HOST:$(pg_port "$n") maxconn 500 check port $(rest_port "$n")"$'\n'
    servers_ro+="  server $n $PATRONI_HOST:$(pg_port "$n") maxconn 500 check port $(rest_port "$n")"$'\n'
  done
  write_file "$HAPROXY_CFG" <<EOF
global
  maxconn 2000
  log stdout format raw local0 notice

defaults
  mode tcp
  log global
  retries 2
  timeout connect 2s
  timeout client 30m
  timeout server 30m
  timeout check 1s

listen stats
  mode http
  bind $PATRONI_HOST:$HAPROXY_STATS_PORT
  stats enable
  stats uri /

listen rw
  bind $PATRONI_HOST:$HAPROXY_RW_PORT
  option httpchk OPTIONS /primary
  http-check expect status 200
  default-server inter 500ms fall 2 rise 1 on-marked-down shutdown-sessions
$servers_rw
listen ro
  bind $PATRONI_HOST:$HAPROXY_RO_PORT
  balance roundrobin
  option httpchk OPTIONS /replica
  http-check expect status 200
  default-server inter 500ms fall 2 rise 1 on-marked-down shutdown-sessions
$servers_ro
EOF
}

# Start a server as the postgres user in the background; PIDFILE gets the server's own PID
# (bash writes its PID, then execs the server in place).
spawn_as_pg() {
  local pidfile=$1 log=$2
  shift 2
  rm -f "$pidfile"
  if ((IS_ROOT)); then
    (cd / && exec runuser -u "$OS_USER" -- bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" </dev/null >>"$log" 2>&1 9>&- &)
  else
    (cd / && exec bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" </dev/null >>"$log" 2>&1 9>&- &)
  fi
  wait_until "pid file" 5 test -s "$pidfile" || die "$* did not start (see $log)"
}

# Before a server binds PORTS (see claim_port in process-helpers.sh).
free_ports() {
  local port
  for port in "$@"; do claim_port "$port" "$PATRONI_HOST"; done
}

start_etcd() {
  etcd_pid >/dev/null && return 0
  free_ports "$ETCD_CLIENT_PORT" "$ETCD_PEER_PORT"
  say "starting etcd on $PATRONI_HOST:$ETCD_CLIENT_PORT"
  spawn_as_pg "$ETCD_PIDFILE" "$LOG_DIR/etcd.log" etcd --name "$PATRONI_SCOPE" --data-dir "$ETCD_DATA" \
    --listen-client-urls "http://$PATRONI_HOST:$ETCD_CLIENT_PORT" --advertise-client-urls "http://$PATRONI_HOST:$ETCD_CLIENT_PORT" \
    --listen-peer-urls "http://$PATRONI_HOST:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://$PATRONI_HOST:$ETCD_PEER_PORT" \
    --initial-cluster "$PATRONI_SCOPE=http://$PATRONI_HOST:$ETCD_PEER_PORT" --enable-v2=true
  wait_until etcd "$PATRONI_WAIT_SECONDS" rest_get "$ETCD_CLIENT_PORT" health >/dev/null ||
    { tail -20 "$LOG_DIR/etcd.log" >&2; die "etcd did not answer /health within ${PATRONI_WAIT_SECONDS}s"; }
}

start_patroni() {
  local n=$1
  patroni_pid "$n" >/dev/null && return 0
  free_ports "$(rest_port "$n")" "$(pg_port "$n")"
  write_patroni_cfg "$n"
  spawn_as_pg "$(patroni_pidfile "$n")" "$LOG_DIR/$n.log" patroni "$(patroni_cfg "$n")"
}

start_haproxy() {
  haproxy_pid >/dev/null && return 0
  free_ports "$HAPROXY_RW_PORT" "$HAPROXY_RO_PORT" "$HAPROXY_STATS_PORT"
  write_haproxy_cfg
  say "starting HAProxy (read-write $PATRONI_HOST:$HAPROXY_RW_PORT, read-only $PATRONI_HOST:$HAPROXY_RO_PORT)"
  as_pg haproxy -D -f "$HAPROXY_CFG" -p "$HAPROXY_PIDFILE" >>"$LOG_DIR/haproxy.log" 2>&1 ||
    die "HAProxy did not start (see $LOG_DIR/haproxy.log)"
}

ensure_app_role() {
  local leader=$1
  su_query "$leader" <<SQL >/dev/null
SELECT 'CREATE ROLE $PG_USER LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_USER')
\\gexec
ALTER ROLE $PG_USER LOGIN PASSWORD '$PG_PASSWORD';
SELECT 'CREATE DATABASE $PG_DATABASE OWNER $PG_USER' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$PG_DATABASE')
\\gexec
GRANT pg_monitor TO $PG_USER;
SQL
}

all_streaming() {
  local leader n
  leader=$(leader_name) || return 1
  for n in "${NODES[@]}"; do
    [[ $n == "$leader" ]] && continue
    streaming "$n" "$leader" || return 1
  done
}

tcp_answers() {
  PGPASSWORD="$PG_PASSWORD" "$PG_BIN/psql" -X -q -A -t -w -h "$PATRONI_HOST" -p "$1" -U "$PG_USER" -d "$PG_DATABASE" -c 'SELECT 1' >/dev/null 2>&1
}

do_start() {
  local t0 leader n
  t0=$(now_ms)
  # A start that fails half-way stops what it started (by PID), so nothing is left running.
  trap 'rc=$?; if ((rc != 0)); then say "start failed: stopping what was started"; do_stop >&2 || true; fi' EXIT
  ensure_dirs
  start_etcd
  # node1 bootstraps when there is no cluster yet; the others clone from the leader.
  start_patroni node1
  wait_until leader "$PATRONI_WAIT_SECONDS" leader_name >/dev/null ||
    { tail -30 "$LOG_DIR/node1.log" >&2; die "no Patroni leader within ${PATRONI_WAIT_SECONDS}s"; }
  for n in node2 node3; do start_patroni "$n"; done
  leader=$(leader_name)
  ensure_app_role "$leader"
  start_haproxy
  wait_until "replicas" "$PATRONI_WAIT_SECONDS" all_streaming ||
    { tail -n 20 "$LOG_DIR"/node2.log "$LOG_DIR"/node3.log >&2; die "the replicas do not stream from the leader within ${PATRONI_WAIT_SECONDS}s"; }
  wait_until "haproxy" 10 tcp_answers "$HAPROXY_RW_PORT" || die "HAProxy's read-write port does not answer"
  wait_until "haproxy" 10 tcp_answers "$HAPROXY_RO_PORT" || die "HAProxy's read-only port does not answer"
  say "up in $(($(now_ms) - t0)) ms: leader $(leader_name), replicas streaming, HAProxy rw $HAPROXY_RW_PORT ro $HAPROXY_RO_PORT"
  trap - EXIT
}

do_stop() {
  local pid n
  if pid=$(haproxy_pid); then stop_pid "$pid" haproxy 5; fi
  for n in "${NODES[@]}"; do
    if pid=$(patroni_pid "$n"); then stop_pid "$pid" "patroni $n" 20 & fi
  done
  wait
  # A postmaster left behind (its Patroni was SIGKILLed) is stopped by its own PID.
  for n in "${NODES[@]}"; do
    if pid=$(postmaster_pid "$n"); then stop_pid "$pid" "postgres $n" 10; fi
  done
  if pid=$(etcd_pid); then stop_pid "$pid" etcd 10; fi
  say "stopped"
}

cmd_status() {
  local ok=0 n pid role
  if pid=$(etcd_pid); then say "etcd      up (pid $pid) $PATRONI_HOST:$ETCD_CLIENT_PORT"; else say "etcd      down"; ok=1; fi
  for n in "${NODES[@]}"; do
    role=down
    if rest_get "$(rest_port "$n")" primary >/dev/null 2>&1; then role=leader
    elif rest_get "$(rest_port "$n")" replica >/dev/null 2>&1; then role=replica; fi
    if pid=$(patroni_pid "$n"); then
      say "$n     $role (patroni pid $pid, postgres $(postmaster_pid "$n" || echo down)) port $(pg_port "$n") rest $(rest_port "$n")"
    else
      say "$n     down"
      ok=1
    fi
    [[ $role != down ]] || ok=1
  done
  if pid=$(haproxy_pid); then say "haproxy   up (pid $pid) rw $HAPROXY_RW_PORT ro $HAPROXY_RO_PORT"; else say "haproxy   down"; ok=1; fi
  return $ok
}

cmd_leader() {
  local leader
  leader=$(leader_name) || die "no leader"
  echo "$leader $(pg_port "$leader")"
}

patronictl_() { as_pg patronictl -c "$(patroni_cfg node1)" "$@"; }

do_switchover() {
  local leader=$1 candidate=$2 t0
  [[ $leader != "$candidate" ]] || die "$candidate already leads"
  t0=$(now_ms)
  patronictl_ switchover "$PATRONI_SCOPE" --leader "$leader" --candidate "$candidate" --force >>"$LOG_DIR/patronictl.log" 2>&1 ||
    die "patronictl switchover failed (see $LOG_DIR/patronictl.log)"
  wait_until "new leader" "$PATRONI_WAIT_SECONDS" test_leader "$candidate" || die "$candidate does not lead within ${PATRONI_WAIT_SECONDS}s"
  local led=$(($(now_ms) - t0))
  wait_until "old leader" "$PATRONI_WAIT_SECONDS" streaming "$leader" "$candidate" ||
    die "$leader does not stream from $candidate within ${PATRONI_WAIT_SECONDS}s"
  say "switchover $leader -> $candidate: leader after $led ms, $leader streaming after $(($(now_ms) - t0)) ms"
}
test_leader() { [[ $(leader_name 2>/dev/null) == "$1" ]]; }

cmd_switchover() {
  local leader candidate=${1:-} n
  leader=$(leader_name) || die "no leader"
  if [[ -z $candidate ]]; then
    for n in "${NODES[@]}"; do
      [[ $n != "$leader" ]] && streaming "$n" "$leader" && { candidate=$n; break; }
    done
    [[ -n $candidate ]] || die "no streaming replica to switch over to"
  fi
  node_index "$candidate" >/dev/null
  do_switchover "$leader" "$candidate"
}

cmd_failover() {
  local leader ppid mpid t0 new
  leader=$(leader_name) || die "no leader"
  ppid=$(patroni_pid "$leader") || die "no Patroni process for $leader"
  mpid=$(postmaster_pid "$leader") || die "no postmaster for $leader"
  t0=$(now_ms)
  kill -KILL "$ppid" "$mpid"
  # The children of a SIGKILLed postmaster exit on their own once they notice; wait, bounded.
  wait_until "postmaster gone" 10 bash -c "! kill -0 $mpid 2>/dev/null" || true
  wait_until "new leader" "$PATRONI_WAIT_SECONDS" new_leader_other_than "$leader" ||
    die "no new leader within ${PATRONI_WAIT_SECONDS}s"
  new=$(leader_name)
  say "killed $leader, new leader $new after $(($(now_ms) - t0)) ms"
}
new_leader_other_than() { local l; l=$(leader_name 2>/dev/null) && [[ $l != "$1" ]]; }

cmd_rejoin() {
  local targets=("$@") n leader
  if ((${#targets[@]} == 0)); then
    for n in "${NODES[@]}"; do patroni_pid "$n" >/dev/null || targets+=("$n"); done
  fi
  ((${#targets[@]})) || { say "every node runs"; return 0; }
  for n in "${targets[@]}"; do
    node_index "$n" >/dev/null
    # A postmaster whose Patroni was killed is stopped first; Patroni starts it again.
    local pid
    if ! patroni_pid "$n" >/dev/null && pid=$(postmaster_pid "$n"); then stop_pid "$pid" "postgres $n" 10; fi
    start_patroni "$n"
  done
  for n in "${targets[@]}"; do
    wait_until "rejoin" "$PATRONI_WAIT_SECONDS" rejoined "$n" || die "$n does not stream from the leader within ${PATRONI_WAIT_SECONDS}s"
    leader=$(leader_name)
    say "$n streams from $leader"
  done
}
rejoined() { local l; l=$(leader_name 2>/dev/null) && [[ $l != "$1" ]] && streaming "$1" "$l"; }

cmd_sync() {
  local mode=${1:-} want
  case $mode in on) want=true ;; off) want=false ;; *) die "usage: sync on|off" ;; esac
  # synchronous_commit on (the default) is what makes a commit wait for the synchronous standby.
  patronictl_ edit-config --force -s "synchronous_mode=$want" -s postgresql.parameters.synchronous_commit=on "$PATRONI_SCOPE" >>"$LOG_DIR/patronictl.log" 2>&1 ||
    die "patronictl edit-config failed (see $LOG_DIR/patronictl.log)"
  wait_until "sync" "$PATRONI_WAIT_SECONDS" sync_is "$want" || die "synchronous_mode=$want not in effect within ${PATRONI_WAIT_SECONDS}s"
  say "synchronous_mode $mode"
}
sync_is() {
  local leader names
  leader=$(leader_name 2>/dev/null) || return 1
  names=$(su_query "$leader" -c 'SHOW synchronous_standby_names' 2>/dev/null) || return 1
  if [[ $1 == true ]]; then [[ -n $names ]]; else [[ -z $names ]]; fi
}

cmd_env() {
  local key
  for key in PATRONI_DIR PATRONI_HOST PATRONI_PG_PORT1 PATRONI_PG_PORT2 PATRONI_PG_PORT3 PATRONI_REST_PORT1 PATRONI_REST_PORT2 \
    PATRONI_REST_PORT3 ETCD_CLIENT_PORT HAPROXY_RW_PORT HAPROXY_RO_PORT HAPROXY_STATS_PORT PG_USER PG_DATABASE; do
    echo "$key=${!key}"
  done
}

main() {
  local cmd=${1:-}
  shift || true
  case $cmd in
    start) ensure_packages && mkdir -p "$PATRONI_DIR" && take_lock && do_start ;;
    stop) [[ -d $PATRONI_DIR ]] || { say "nothing to stop"; return 0; }; take_lock && do_stop ;;
    status) cmd_status ;;
    leader) cmd_leader ;;
    switchover) take_lock && cmd_switchover "$@" ;;
    failover) take_lock && cmd_failover ;;
    rejoin) take_lock && cmd_rejoin "$@" ;;
    sync) take_lock && cmd_sync "$@" ;;
    reset) mkdir -p "$PATRONI_DIR" && take_lock && do_stop && rm -rf "${PATRONI_DIR:?}"/* && ensure_packages && do_start ;;
    psql) local n=${1:?node}; shift; su_query "$n" "$@" ;;
    env) cmd_env ;;
    -h | --help | help | '') usage ;;
    *) usage >&2; die "unknown command '$cmd'" ;;
  esac
}

main "$@"
