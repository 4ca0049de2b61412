# Helpers shared by scripts/cluster.sh (through scripts/cluster/common.sh) and scripts/patroni.sh
# (sourced, not run). Each caller sets IS_ROOT (1 when run as root) and OS_USER (the user that
# owns the servers) first.

# Run a command as the OS user that owns the cluster (from / so that a cwd the
# postgres user cannot enter does not matter). fd 9 (the lock) is closed so
# that daemons do not inherit, and so hold, the lock.
as_pg() {
  if ((IS_ROOT)); then
    (cd / && runuser -u "$OS_USER" -- "$@" 9>&-)
  else
    "$@" 9>&-
  fi
}

# Write stdin to FILE (mode MODE), owned by the cluster's OS user.
write_file() {
  local file=$1 mode=${2:-0644}
  cat >"$file.new"
  chmod "$mode" "$file.new"
  ((IS_ROOT)) && chown "$OS_USER:$OS_USER" "$file.new"
  mv -f "$file.new" "$file"
}

# Print the PID in PIDFILE if that process is alive (not a zombie) and its command name matches
# the regular expression COMM_RE; fail otherwise (a stale pidfile never names a reused PID).
live_pid() {
  local pidfile=$1 comm_re=$2 pid stat
  [[ -r $pidfile ]] || return 1
  read -r pid <"$pidfile" || return 1
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  # /proc/PID/stat: "PID (COMM) STATE ..."
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
  [[ $stat =~ ^[0-9]+\ \((.*)\)\ ([A-Za-z]) ]] || return 1
  local comm=${BASH_REMATCH[1]} state=${BASH_REMATCH[2]}
  [[ $state != Z && $state != X ]] || return 1
  [[ $comm =~ ^($comm_re)$ ]] || return 1
  echo "$pid"
}

# Our fixed listening ports lie inside Linux's ephemeral range (ip_local_port_range, 32768-60999 by
# default), so any outgoing connection of the machine may take one as its source port and make a
# server's bind fail (EADDRINUSE). As root, add every port either test cluster may listen on
# (cluster.sh with offsets 0-9, patroni.sh) to ip_local_reserved_ports (the kernel's list of ports
# never handed out automatically; existing entries are kept), once per script run, so the ports of
# a cluster started later are not taken by connections opened before; without root, or where the
# setting is absent, nothing is changed.
PORTS_RESERVED=0
reserve_ports() {
  local file=/proc/sys/net/ipv4/ip_local_reserved_ports current ranges
  ((PORTS_RESERVED)) && return 0
  PORTS_RESERVED=1
  ((IS_ROOT)) && [[ -w $file ]] || return 0
  current=$(cat "$file" 2>/dev/null) || return 0
  ranges=$(project_port_ranges) || return 0
  echo "${current:+$current,}$ranges" >"$file" 2>/dev/null || true
}

# The port ranges of scripts/cluster.env (every offset) and scripts/patroni.env, as "a-b,c-d,e-f".
project_port_ranges() {
  local dir
  dir=$(dirname "${BASH_SOURCE[0]}")
  (
    source "$dir/cluster.env"
    source "$dir/patroni.env"
    echo "$PG_PRIMARY_PORT-$((PG_REPLICA2_PORT + 90)),$PGBOUNCER_PORT-$((PGBOUNCER_PORT + 90)),$PATRONI_PG_PORT1-$ETCD_PEER_PORT"
  )
}

# Wait (at most SECONDS) until no socket of this machine uses local TCP PORT (a connection that
# took it as its source port before it was reserved goes away; TIME-WAIT sockets do not count, our
# servers bind with SO_REUSEADDR); fail with the socket listed.
wait_port_free() {
  local port=$1 seconds=${2:-15} i
  for ((i = 0; i < seconds * 10; i++)); do
    [[ -z $(ss -Htan exclude time-wait exclude listening "( sport = :$port )" 2>/dev/null) ]] && return 0
    sleep 0.1
  done
  ss -tanp exclude time-wait exclude listening "( sport = :$port )" >&2 || true
  return 1
}

# Before a server binds PORT on HOST: the ports are reserved and PORT is waited free (15 s at most);
# the script dies (its own `die`) naming what still holds it.
claim_port() {
  local port=$1 host=$2
  reserve_ports
  wait_port_free "$port" 15 || die "port $port on $host is still used by the sockets above after 15 s (another server on it, or a connection that took it as its source port)"
}
