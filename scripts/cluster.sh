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
# PostgreSQL on 5432. Pure bash, no Node.
set -euo pipefail

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd -- "$SCRIPT_DIR/.." && pwd -P)"
# shellcheck source-path=SCRIPTDIR source=cluster.env
source "$SCRIPT_DIR/cluster.env"

# PGPOOLS_CLUSTER_OFFSET=N (1-9) runs an independent copy of the cluster in $CLUSTER_DIR-N with
# every port shifted by N*10, so disruptive tests can run beside the default cluster.
PGPOOLS_CLUSTER_OFFSET="${PGPOOLS_CLUSTER_OFFSET:-0}"
[[ $PGPOOLS_CLUSTER_OFFSET =~ ^[0-9]$ ]] || { echo "cluster.sh: PGPOOLS_CLUSTER_OFFSET must be a digit 0-9, got '$PGPOOLS_CLUSTER_OFFSET'" >&2; exit 2; }
if ((PGPOOLS_CLUSTER_OFFSET != 0)); then
  CLUSTER_DIR="$CLUSTER_DIR-$PGPOOLS_CLUSTER_OFFSET"
  PG_PRIMARY_PORT=$((PG_PRIMARY_PORT + PGPOOLS_CLUSTER_OFFSET * 10))
  PG_REPLICA1_PORT=$((PG_REPLICA1_PORT + PGPOOLS_CLUSTER_OFFSET * 10))
  PG_REPLICA2_PORT=$((PG_REPLICA2_PORT + PGPOOLS_CLUSTER_OFFSET * 10))
  PGBOUNCER_PORT=$((PGBOUNCER_PORT + PGPOOLS_CLUSTER_OFFSET * 10))
fi

case "$CLUSTER_DIR" in
  /*) ;;
  *) CLUSTER_DIR="$REPO_ROOT/$CLUSTER_DIR" ;;
esac
SOCKET_DIR="$CLUSTER_DIR/sockets"
LOG_DIR="$CLUSTER_DIR/logs"
STATE_DIR="$CLUSTER_DIR/state"
BOUNCER_DIR="$CLUSTER_DIR/pgbouncer"
BOUNCER_INI="$BOUNCER_DIR/pgbouncer.ini"
BOUNCER_USERLIST="$BOUNCER_DIR/userlist.txt"
BOUNCER_PIDFILE="$BOUNCER_DIR/pgbouncer.pid"
PRIMARY_MARKER="$STATE_DIR/primary.initialized"
LOCK_FILE="$CLUSTER_DIR/.lock"

PG_NODES=(primary replica1 replica2)
REPLICAS=(replica1 replica2)
ALL_NODES=(primary replica1 replica2 pgbouncer)

IS_ROOT=0
[[ $EUID -eq 0 ]] && IS_ROOT=1
OS_USER=postgres # only used when running as root
# shellcheck source-path=SCRIPTDIR source=process-helpers.sh
source "$SCRIPT_DIR/process-helpers.sh"

# Client tools never prompt and never pick up a stray environment.
export PGCONNECT_TIMEOUT=3
unset PGHOST PGHOSTADDR PGPORT PGUSER PGDATABASE PGPASSWORD PGPASSFILE PGSERVICE \
  PGOPTIONS PGSSLMODE PGTARGETSESSIONATTRS PGAPPNAME 2>/dev/null || true

# ---------------------------------------------------------------- helpers ----

say() { printf '[cluster] %s\n' "$*"; }
warn() { printf '[cluster] %s\n' "$*" >&2; }
die() {
  printf '[cluster] ERROR: %s\n' "$*" >&2
  exit 1
}

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
}

is_node() {
  local n
  for n in "${ALL_NODES[@]}"; do [[ $n == "$1" ]] && return 0; done
  return 1
}
is_replica() { [[ $1 == replica1 || $1 == replica2 ]]; }

node_port() {
  case $1 in
    primary) echo "$PG_PRIMARY_PORT" ;;
    replica1) echo "$PG_REPLICA1_PORT" ;;
    replica2) echo "$PG_REPLICA2_PORT" ;;
    pgbouncer) echo "$PGBOUNCER_PORT" ;;
    *) die "unknown node '$1' (expected: ${ALL_NODES[*]})" ;;
  esac
}
data_dir() { echo "$CLUSTER_DIR/$1"; }
node_log() { echo "$LOG_DIR/$1.log"; }

show_log_tail() {
  local log
  log=$(node_log "$1")
  if [[ -f $log ]]; then
    printf '[cluster] ---- last lines of %s ----\n' "$log" >&2
    tail -n "${2:-25}" "$log" >&2 || true
    printf '[cluster] ----\n' >&2
  else
    printf '[cluster] (no log file %s)\n' "$log" >&2
  fi
}

# psql as the superuser over the unix socket; unaligned, tuples only, quiet.
su_query() {
  local node=$1
  shift
  "$PG_BIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$SOCKET_DIR" -p "$(node_port "$node")" \
    -U "$PG_SUPERUSER" -d postgres "$@"
}

# One query through PgBouncer as the app user (TCP, scram-sha-256). Bounded by
# `timeout`: PgBouncer accepts the login itself and then queues the query for
# up to query_wait_timeout (120 s) while the primary is down.
bouncer_query() {
  PGPASSWORD="$PG_PASSWORD" timeout 5 "$PG_BIN/psql" -X -q -A -t -w -v ON_ERROR_STOP=1 \
    -h "$PG_HOST" -p "$PGBOUNCER_PORT" -U "$PG_USER" -d "${2:-$PG_DATABASE}" -c "$1"
}

# PID of the running postmaster of NAME, or failure.
pg_pid() { live_pid "$(data_dir "$1")/postmaster.pid" 'postgres|postmaster'; }
bouncer_pid() { live_pid "$BOUNCER_PIDFILE" pgbouncer; }

node_pid() {
  if [[ $1 == pgbouncer ]]; then bouncer_pid; else pg_pid "$1"; fi
}

# 0 when NAME accepts connections (on its unix socket).
pg_accepting() {
  "$PG_BIN/pg_isready" -q -h "$SOCKET_DIR" -p "$(node_port "$1")" -U "$PG_SUPERUSER" -d postgres -t 1 >/dev/null 2>&1
}

# Fail if something that is not our NAME already listens on its TCP port.
check_port_free() {
  local node=$1 port rc=0
  port=$(node_port "$node")
  reserve_ports "$port-$port"
  wait_port_free "$port" 15 || die "port $port on $PG_HOST is held by the connection above (it took the port as its source port) for 15 s"
  "$PG_BIN/pg_isready" -q -h "$PG_HOST" -p "$port" -U "$PG_SUPERUSER" -d postgres -t 1 >/dev/null 2>&1 || rc=$?
  if ((rc == 0 || rc == 1)); then
    die "port $port on $PG_HOST is already in use by a process that is not this cluster's $node" \
      "(no live pid in its pidfile under $CLUSTER_DIR). Stop that process first."
  fi
}

now_s() { date +%s; }

# ------------------------------------------------------------ preflight ----

ensure_binaries() {
  local need=()
  [[ -x $PG_BIN/postgres ]] || need+=(postgresql-15)
  [[ -x $PGBOUNCER_BIN ]] || need+=(pgbouncer)
  ((${#need[@]})) || return 0
  if ((IS_ROOT)); then
    say "installing missing packages: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    if ! apt-get install -y -q "${need[@]}"; then
      # Fall back to the distribution's default PostgreSQL if 15 is not offered.
      local alt=("${need[@]/postgresql-15/postgresql}")
      apt-get install -y -q "${alt[@]}"
    fi
    [[ -x $PG_BIN/postgres ]] || die "$PG_BIN/postgres still missing after install (PG_BIN in cluster.env)"
    [[ -x $PGBOUNCER_BIN ]] || die "$PGBOUNCER_BIN still missing after install"
  else
    die "missing ${need[*]}; install with: sudo apt-get update && sudo apt-get install -y ${need[*]}"
  fi
}

ensure_dirs() {
  [[ $CLUSTER_DIR != *"'"* ]] || die "CLUSTER_DIR must not contain a single quote: $CLUSTER_DIR"
  # Unix socket paths are limited to 107 bytes (".s.PGSQL.NNNNN.lock" included).
  local sock="$SOCKET_DIR/.s.PGSQL.$PGBOUNCER_PORT.lock"
  ((${#sock} <= 107)) ||
    die "socket path too long (${#sock} > 107 bytes): $sock -- move the repo to a shorter path or set an absolute, short CLUSTER_DIR in scripts/cluster.env"

  local d
  for d in "$CLUSTER_DIR" "$SOCKET_DIR" "$LOG_DIR" "$STATE_DIR" "$BOUNCER_DIR"; do
    if [[ ! -d $d ]]; then
      mkdir -p "$d"
      ((IS_ROOT)) && chown "$OS_USER:$OS_USER" "$d"
    fi
  done
  chmod 0755 "$SOCKET_DIR" 2>/dev/null || true

  if ((IS_ROOT)) && ! runuser -u "$OS_USER" -- test -x "$CLUSTER_DIR" -a -w "$CLUSTER_DIR" 2>/dev/null; then
    # Find the first directory on the way that the postgres user cannot enter.
    local p="" part blocked=""
    IFS=/ read -r -a parts <<<"${CLUSTER_DIR#/}"
    for part in "${parts[@]}"; do
      p="$p/$part"
      if ! runuser -u "$OS_USER" -- test -x "$p" 2>/dev/null; then
        blocked=$p
        break
      fi
    done
    die "the '$OS_USER' OS user cannot reach $CLUSTER_DIR${blocked:+ (no search permission on $blocked)}." \
      "Fix with e.g.: chmod o+x ${blocked:-<that directory>}  -- or set an absolute CLUSTER_DIR elsewhere in scripts/cluster.env"
  fi
}

# Serialise commands that change the cluster (parallel test workers may call
# `start` at the same time). Readers (status, wait, psql) do not lock.
take_lock() {
  exec 9>>"$LOCK_FILE"
  if ! flock -n 9; then
    say "waiting for another cluster.sh to finish..."
    flock -w 600 9 || die "could not lock $LOCK_FILE within 600 s"
  fi
}

# ------------------------------------------------------------------ tls ----
# TLS on every PostgreSQL node (PgBouncer stays plain). Everything here is in these tls_*
# functions; the rest of the script only calls tls_ensure_certs (start/reset), tls_node_conf
# (from write_node_conf) and tls_activate (after the nodes are up).
#
# Under $CLUSTER_DIR/tls (git-ignored with the cluster dir), generated once with openssl:
#   ca.crt / ca.key              the local CA that signs the servers' certificates
#   NODE.crt / NODE.key          one server certificate per node (CN=NODE,
#                                subjectAltName IP:$PG_HOST, DNS:localhost), signed by ca.crt
#   other-ca.crt / other-ca.key  an unrelated CA, for tests of a wrong CA
# The servers accept TLS and plain connections alike (pg_hba `host` lines match both), so
# clients choose: sslmode=verify-full&sslrootcert=$CLUSTER_DIR/tls/ca.crt verifies the server.
TLS_DIR="$CLUSTER_DIR/tls"

tls_ensure_certs() {
  [[ -f $TLS_DIR/ca.crt && -f $TLS_DIR/other-ca.crt ]] && tls_node_certs_present && return 0
  command -v openssl >/dev/null || die "openssl is missing; install it with: apt-get install -y openssl"
  say "generating a local CA and server certificates in $TLS_DIR"
  rm -rf "$TLS_DIR" && mkdir -p "$TLS_DIR"
  local ca n
  for ca in ca other-ca; do
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=nestjs-pg-pools test $ca" \
      -keyout "$TLS_DIR/$ca.key" -out "$TLS_DIR/$ca.crt" 2>/dev/null || die "openssl could not create $ca"
  done
  for n in "${PG_NODES[@]}"; do
    openssl req -newkey rsa:2048 -nodes -subj "/CN=$n" -keyout "$TLS_DIR/$n.key" -out "$TLS_DIR/$n.csr" 2>/dev/null ||
      die "openssl could not create the key of $n"
    printf 'subjectAltName = IP:%s, DNS:localhost\nextendedKeyUsage = serverAuth\n' "$PG_HOST" >"$TLS_DIR/$n.ext"
    openssl x509 -req -in "$TLS_DIR/$n.csr" -CA "$TLS_DIR/ca.crt" -CAkey "$TLS_DIR/ca.key" -CAcreateserial \
      -days 3650 -extfile "$TLS_DIR/$n.ext" -out "$TLS_DIR/$n.crt" 2>/dev/null || die "openssl could not sign the certificate of $n"
    rm -f "$TLS_DIR/$n.csr" "$TLS_DIR/$n.ext"
  done
  # PostgreSQL refuses a key that others can read; the CA certificates are for every client.
  chmod 0755 "$TLS_DIR"
  chmod 0600 "$TLS_DIR"/*.key
  chmod 0644 "$TLS_DIR"/*.crt
  if ((IS_ROOT)); then chown -R "$OS_USER:$OS_USER" "$TLS_DIR"; fi
}

tls_node_certs_present() {
  local n
  for n in "${PG_NODES[@]}"; do [[ -f $TLS_DIR/$n.crt && -f $TLS_DIR/$n.key ]] || return 1; done
}

# The ssl settings of NODE, for its cluster.conf.
tls_node_conf() {
  local node=$1
  [[ -f $TLS_DIR/$node.crt ]] || return 0
  printf '%s\n' "# TLS (see the tls_* functions of scripts/cluster.sh)" "ssl = on" \
    "ssl_cert_file = '$TLS_DIR/$node.crt'" "ssl_key_file = '$TLS_DIR/$node.key'" "ssl_min_protocol_version = 'TLSv1.2'"
}

# A node that runs without TLS (started before the certificates existed) rewrites its
# settings and reloads them; ssl can change without a restart. Bounded wait.
tls_activate() {
  local n deadline
  for n in "${PG_NODES[@]}"; do
    [[ $(su_query "$n" -c 'SHOW ssl' 2>/dev/null) == on ]] && continue
    say "enabling TLS on $n (reload)"
    write_node_conf "$n"
    as_pg "$PG_BIN/pg_ctl" reload -D "$(data_dir "$n")" -s >/dev/null
    deadline=$(($(now_s) + CLUSTER_WAIT_SECONDS))
    until [[ $(su_query "$n" -c 'SHOW ssl' 2>/dev/null) == on ]]; do
      (($(now_s) < deadline)) || { show_log_tail "$n"; die "$n did not enable TLS after a reload"; }
      sleep 0.2
    done
  done
}


# ---------------------------------------------------------- postgres ----

# Settings of every node; regenerated each time the node starts, included from
# the end of postgresql.conf (so these win; postgresql.auto.conf wins over them).
write_node_conf() {
  local node=$1 dir=${2:-$(data_dir "$1")}
  write_file "$dir/cluster.conf" <<EOF
# Generated by scripts/cluster.sh each time this node starts. Do not edit.
cluster_name = '$node'                  # also the walreceiver's application_name
port = $(node_port "$node")
listen_addresses = '$PG_HOST'
unix_socket_directories = '$SOCKET_DIR'
unix_socket_permissions = 0777
max_connections = $PG_MAX_CONNECTIONS
superuser_reserved_connections = 3
password_encryption = 'scram-sha-256'

shared_buffers = '64MB'
dynamic_shared_memory_type = posix

# replication
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
wal_keep_size = '256MB'
hot_standby = on
hot_standby_feedback = on
wal_receiver_status_interval = '1s'
wal_retrieve_retry_interval = '1s'      # replicas reconnect quickly after a primary restart

# throw-away test cluster: trade durability for speed
fsync = off
synchronous_commit = off
full_page_writes = off

# logging (to $LOG_DIR/$node.log via pg_ctl -l); statements are not logged
logging_collector = off
log_line_prefix = '%m [%p] %q%u@%d '
log_min_messages = warning
log_connections = off
log_disconnections = off
log_statement = 'none'
$(tls_node_conf "$node")
EOF
}

write_hba() {
  write_file "$(data_dir primary)/pg_hba.conf" 0600 <<EOF
# Generated by scripts/cluster.sh.
# TYPE  DATABASE     USER  ADDRESS        METHOD
local   all          all                  trust
local   replication  all                  trust
host    all          all   127.0.0.1/32   scram-sha-256
host    replication  all   127.0.0.1/32   scram-sha-256
EOF
}

# Start a PostgreSQL node if it is not running; returns once it accepts connections.
start_pg() {
  local node=$1 dir log
  dir=$(data_dir "$node")
  log=$(node_log "$node")
  if pg_pid "$node" >/dev/null; then
    wait_accepting "$node"
    return 0
  fi
  [[ -f $dir/PG_VERSION ]] || die "$node has no data directory ($dir); run: $0 start"
  check_port_free "$node"
  write_node_conf "$node"
  say "starting $node on port $(node_port "$node")"
  local deadline=$(($(now_s) + CLUSTER_WAIT_SECONDS))
  # Retries cover the window after a kill -9 of a postmaster: old backends may
  # still hold its shared memory, or the killed process is a not yet reaped
  # zombie that postgres takes for a live owner of postmaster.pid.
  local offset
  until offset=$(stat -c %s "$log" 2>/dev/null || echo 0)
    as_pg "$PG_BIN/pg_ctl" start -D "$dir" -l "$log" -w -t "$CLUSTER_WAIT_SECONDS" -s >/dev/null 2>&1; do
    if pg_pid "$node" >/dev/null; then break; fi
    if (($(now_s) >= deadline)) ||
      ! tail -c +"$((offset + 1))" "$log" 2>/dev/null | grep -qE 'is still in use|lock file "postmaster.pid" already exists'; then
      show_log_tail "$node"
      die "could not start $node (log: $log)"
    fi
    sleep 1
  done
  wait_accepting "$node"
}

wait_accepting() {
  local node=$1 deadline=$(($(now_s) + CLUSTER_WAIT_SECONDS))
  until pg_accepting "$node"; do
    if (($(now_s) >= deadline)); then
      show_log_tail "$node"
      die "$node does not accept connections after ${CLUSTER_WAIT_SECONDS}s"
    fi
    if ! pg_pid "$node" >/dev/null; then
      show_log_tail "$node"
      die "$node is not running"
    fi
    sleep 0.2
  done
}

stop_pg() {
  local node=$1 mode=${2:-fast} dir
  dir=$(data_dir "$node")
  if ! pg_pid "$node" >/dev/null; then
    say "$node is not running"
    return 0
  fi
  say "stopping $node (-m $mode)"
  as_pg "$PG_BIN/pg_ctl" stop -D "$dir" -m "$mode" -w -t "$CLUSTER_WAIT_SECONDS" -s ||
    { show_log_tail "$node"; die "could not stop $node"; }
}

# kill -9 PID, then wait (bounded) until it and the children it had are gone.
kill9_and_wait() {
  local node=$1 pid=$2 children p deadline
  children=$(ps -o pid= --ppid "$pid" 2>/dev/null || true)
  say "kill -9 $node (pid $pid)"
  kill -9 "$pid"
  deadline=$(($(now_s) + 15))
  # Wait until the killed process is reaped (a zombie still "owns" postmaster.pid
  # for the next postmaster's check; in containers PID 1 may take a second or
  # two to reap) and its former children have exited (backends exit on
  # postmaster death; a child zombie counts as gone).
  while [[ -e /proc/$pid ]]; do
    (($(now_s) >= deadline)) && { warn "pid $pid of $node not reaped after 15 s"; return 0; }
    sleep 0.05
  done
  for p in $children; do
    while [[ -e /proc/$p ]] && [[ $(ps -o stat= -p "$p" 2>/dev/null) != Z* ]]; do
      (($(now_s) >= deadline)) && { warn "pid $p of $node still alive after 15 s"; return 0; }
      sleep 0.05
    done
  done
}

ensure_slots() {
  # One physical slot per replica, so the primary keeps WAL for it while it is down.
  su_query primary <<'SQL' >/dev/null
SELECT pg_create_physical_replication_slot(s, true)
FROM unnest(ARRAY['replica1', 'replica2']) AS s
WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots r WHERE r.slot_name = s);
SQL
}

init_primary() {
  local dir
  dir=$(data_dir primary)
  # Anything left over belongs to an older, incomplete attempt: start from scratch.
  local n
  for n in "${PG_NODES[@]}"; do
    pg_pid "$n" >/dev/null && stop_pg "$n" immediate
    rm -rf "$(data_dir "$n")" "$(data_dir "$n").tmp"
  done
  say "initdb primary in $dir"
  as_pg "$PG_BIN/initdb" -D "$dir" -U "$PG_SUPERUSER" -E UTF8 --no-locale \
    --auth-local=trust --auth-host=scram-sha-256 --no-sync --no-instructions >"$(node_log primary).initdb" 2>&1 ||
    { cat "$(node_log primary).initdb" >&2; die "initdb failed"; }
  printf "\n# Cluster settings (generated, see scripts/cluster.sh)\ninclude = 'cluster.conf'\n" |
    as_pg tee -a "$dir/postgresql.conf" >/dev/null
  write_hba
  start_pg primary
  say "creating roles '$PG_REPLICATION_USER', '$PG_USER' and database '$PG_DATABASE'"
  su_query primary \
    -v repl_user="$PG_REPLICATION_USER" -v repl_pw="$PG_REPLICATION_PASSWORD" \
    -v app_user="$PG_USER" -v app_pw="$PG_PASSWORD" -v app_db="$PG_DATABASE" <<'SQL' >/dev/null
CREATE ROLE :"repl_user" LOGIN REPLICATION PASSWORD :'repl_pw';
CREATE ROLE :"app_user" LOGIN PASSWORD :'app_pw';
CREATE DATABASE :"app_db" OWNER :"app_user";
SQL
  ensure_slots
  date -u +%FT%TZ | write_file "$PRIMARY_MARKER"
}

init_replica() {
  local node=$1 dir tmp
  dir=$(data_dir "$node")
  tmp="$dir.tmp"
  rm -rf "$tmp"
  say "pg_basebackup $node from primary (slot $node)"
  # -R writes standby.signal + primary_conninfo (incl. password) + primary_slot_name
  # into postgresql.auto.conf. Done into NAME.tmp and renamed, so a half-made
  # replica is never mistaken for a complete one.
  as_pg env PGPASSWORD="$PG_REPLICATION_PASSWORD" "$PG_BIN/pg_basebackup" \
    -D "$tmp" -R -X stream -S "$node" -c fast --no-sync \
    -d "host=$PG_HOST port=$PG_PRIMARY_PORT user=$PG_REPLICATION_USER application_name=$node" \
    >"$(node_log "$node").basebackup" 2>&1 ||
    { cat "$(node_log "$node").basebackup" >&2; rm -rf "$tmp"; die "pg_basebackup for $node failed"; }
  mv "$tmp" "$dir"
}

# Wait (bounded) until every named replica shows state 'streaming' in
# pg_stat_replication on the primary.
wait_streaming() { wait_streaming_from primary "$@"; }

# Wait (bounded) until every named standby shows state 'streaming' in
# pg_stat_replication on SOURCE.
wait_streaming_from() {
  local src=$1
  shift
  local names=("$@") deadline=$(($(now_s) + CLUSTER_WAIT_SECONDS)) list n got
  list=$(printf "'%s'," "${names[@]}")
  list=${list%,}
  while :; do
    got=$(su_query "$src" -c "SELECT count(DISTINCT application_name) FROM pg_stat_replication
      WHERE state = 'streaming' AND application_name IN ($list)" 2>/dev/null || echo 0)
    [[ $got == "${#names[@]}" ]] && return 0
    if (($(now_s) >= deadline)); then
      warn "pg_stat_replication on $src:"
      su_query "$src" -P footer=off -c "SELECT application_name, state, client_addr, sent_lsn, replay_lsn
        FROM pg_stat_replication" -F ' | ' >&2 2>/dev/null || warn "(primary not reachable)"
      for n in "${names[@]}"; do show_log_tail "$n" 15; done
      show_log_tail "$src" 15
      die "standby(s) ${names[*]} not streaming from $src after ${CLUSTER_WAIT_SECONDS}s (a broken replica can be rebuilt with: $0 reset)"
    fi
    sleep 0.2
  done
}

# ---------------------------------------------------------- pgbouncer ----

write_bouncer_conf() {
  # auth_file: plain-text password, so PgBouncer can do SCRAM both with the
  # client and with the primary.
  printf '"%s" "%s"\n' "$PG_USER" "$PG_PASSWORD" | write_file "$BOUNCER_USERLIST" 0600
  write_file "$BOUNCER_INI" 0600 <<EOF
; Generated by scripts/cluster.sh each time pgbouncer starts. Do not edit.
[databases]
; every database name maps to the same-named database on the primary (TCP, scram)
* = host=$PG_HOST port=$PG_PRIMARY_PORT

[pgbouncer]
listen_addr = $PG_HOST
listen_port = $PGBOUNCER_PORT
unix_socket_dir = $SOCKET_DIR
logfile = $(node_log pgbouncer)
pidfile = $BOUNCER_PIDFILE

auth_type = scram-sha-256
auth_file = $BOUNCER_USERLIST
; SHOW ... / PAUSE / RELOAD on the "pgbouncer" admin console database
admin_users = $PG_USER
stats_users = $PG_USER

pool_mode = $PGBOUNCER_POOL_MODE
max_client_conn = $PGBOUNCER_MAX_CLIENT_CONN
default_pool_size = $PGBOUNCER_DEFAULT_POOL_SIZE

; Startup parameters PgBouncer drops instead of failing the login with
; "unsupported startup parameter". Checked against the installed PgBouncer
; 1.18.0 (Debian 12): it accepts any names here and silently drops them, so
; e.g. 'options' (-c ...) and 'statement_timeout' sent by node-postgres do NOT
; reach the server through PgBouncer. Other parameters, e.g. lock_timeout,
; are still rejected. Tracked ones (application_name, client_encoding,
; DateStyle, TimeZone, standard_conforming_strings) pass as usual.
ignore_startup_parameters = extra_float_digits,options,statement_timeout,idle_in_transaction_session_timeout

; retry a failed server login after 1 s instead of 15 s (chaos tests restart the primary)
server_login_retry = 1
server_connect_timeout = 5
log_connections = 0
log_disconnections = 0
EOF
}

# PgBouncer itself answers (admin console; needs no server connection).
bouncer_alive() { bouncer_query 'SHOW VERSION' pgbouncer >/dev/null 2>&1; }
# A query goes through PgBouncer to the primary.
bouncer_ready() { bouncer_query 'SELECT 1' >/dev/null 2>&1; }

# Wait until PgBouncer answers, and, when the primary is up, until a query goes
# through it (while the primary is down that would wait for nothing).
wait_bouncer() {
  local deadline=$(($(now_s) + CLUSTER_WAIT_SECONDS)) err=""
  until bouncer_alive && { ! pg_accepting primary || bouncer_ready; }; do
    if (($(now_s) >= deadline)); then
      err=$(bouncer_query 'SELECT 1' 2>&1 || true)
      show_log_tail pgbouncer
      die "pgbouncer on $PG_HOST:$PGBOUNCER_PORT does not answer a query after ${CLUSTER_WAIT_SECONDS}s: $err"
    fi
    if ! bouncer_pid >/dev/null; then
      show_log_tail pgbouncer
      die "pgbouncer is not running"
    fi
    sleep 0.2
  done
}

start_bouncer() {
  if bouncer_pid >/dev/null; then
    wait_bouncer
    return 0
  fi
  check_port_free pgbouncer
  write_bouncer_conf
  rm -f "$BOUNCER_PIDFILE"
  # pgbouncer opens its logfile itself, as the cluster's OS user
  local log
  log=$(node_log pgbouncer)
  touch "$log"
  ((IS_ROOT)) && chown "$OS_USER:$OS_USER" "$log"
  say "starting pgbouncer on port $PGBOUNCER_PORT"
  as_pg "$PGBOUNCER_BIN" -d -q "$BOUNCER_INI" >>"$log" 2>&1 ||
    { show_log_tail pgbouncer; die "could not start pgbouncer"; }
  wait_bouncer
}

stop_bouncer() {
  local mode=${1:-fast} pid sig deadline
  if ! pid=$(bouncer_pid); then
    say "pgbouncer is not running"
    return 0
  fi
  # SIGINT = safe shutdown (waits for transactions), SIGTERM = immediate shutdown.
  case $mode in
    smart) sig=INT ;;
    fast | immediate) sig=TERM ;;
    *) die "unknown stop mode '$mode' (smart|fast|immediate)" ;;
  esac
  say "stopping pgbouncer (SIG$sig)"
  kill "-$sig" "$pid"
  deadline=$(($(now_s) + CLUSTER_WAIT_SECONDS))
  while kill -0 "$pid" 2>/dev/null; do
    (($(now_s) >= deadline)) && die "pgbouncer (pid $pid) did not stop"
    sleep 0.1
  done
}

# ----------------------------------------------------------- commands ----

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

# ------------------------------------------------------------ failover ----

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
  local node=$1 src=$2 dir tmp
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
  dir=$(data_dir "$node")
  tmp="$dir.tmp"
  rm -rf "$tmp"
  say "pg_basebackup $node from $src (slot $node)"
  as_pg env PGPASSWORD="$PG_REPLICATION_PASSWORD" "$PG_BIN/pg_basebackup" \
    -D "$tmp" -R -X stream -S "$node" -c fast --no-sync \
    -d "host=$PG_HOST port=$(node_port "$src") user=$PG_REPLICATION_USER application_name=$node" \
    >"$(node_log "$node").basebackup" 2>&1 ||
    { cat "$(node_log "$node").basebackup" >&2; rm -rf "$tmp"; die "pg_basebackup of $node from $src failed"; }
  # A base backup of a former standby still names that standby's upstream first; -R appended
  # the new primary_conninfo/primary_slot_name after it, and the last setting wins.
  rm -rf "$dir"
  mv "$tmp" "$dir"
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
