# shellcheck shell=bash
# Sourced by scripts/cluster.sh (SCRIPT_DIR and REPO_ROOT set): the settings of scripts/cluster.env
# with the PGPOOLS_CLUSTER_OFFSET shift, the paths under $CLUSTER_DIR, the helpers every part of
# the cluster script uses (messages, node names and ports, psql as the superuser, PIDs) and the
# preflight (packages, directories, the lock).

# shellcheck source=../cluster.env
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
# shellcheck source=../process-helpers.sh
source "$SCRIPT_DIR/process-helpers.sh"

# Client tools never prompt and never pick up a stray environment.
export PGCONNECT_TIMEOUT=3
unset PGHOST PGHOSTADDR PGPORT PGUSER PGDATABASE PGPASSWORD PGPASSFILE PGSERVICE \
  PGOPTIONS PGSSLMODE PGTARGETSESSIONATTRS PGAPPNAME 2>/dev/null || true

say() { printf '[cluster] %s\n' "$*"; }
warn() { printf '[cluster] %s\n' "$*" >&2; }
die() {
  printf '[cluster] ERROR: %s\n' "$*" >&2
  exit 1
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

# PID of the running postmaster of NAME, or failure.
pg_pid() { live_pid "$(data_dir "$1")/postmaster.pid" 'postgres|postmaster'; }

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
  claim_port "$port" "$PG_HOST"
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
