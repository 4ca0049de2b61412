# shellcheck shell=bash
# Sourced by scripts/cluster.sh: the TLS certificates and settings of the PostgreSQL nodes.

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
  printf '%s\n' "# TLS (see scripts/cluster/tls.sh)" "ssl = on" \
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
