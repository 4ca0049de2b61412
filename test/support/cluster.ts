// Test-side handle on the local PostgreSQL cluster of scripts/cluster.sh: primary + replica1 +
// replica2 (streaming hot standbys) + PgBouncer (transaction pooling) in front of the primary.
// All settings are read from scripts/cluster.env, the one place that holds them.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import type { NodeOptions } from 'nestjs-pg-pools';

export type PgNodeName = 'primary' | 'replica1' | 'replica2';
export type ClusterNodeName = PgNodeName | 'pgbouncer';

export const pgNodeNames: readonly PgNodeName[] = ['primary', 'replica1', 'replica2'];
export const clusterNodeNames: readonly ClusterNodeName[] = [...pgNodeNames, 'pgbouncer'];

/** TCP connection of the app user (password auth, scram-sha-256) to one node. */
export interface NodeConnection {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password: string;
  readonly database: string;
}

/** Superuser connection over the node's unix socket (trust auth, no password). */
export interface SuperuserSocket {
  /** The socket directory; `pg` treats a host that starts with `/` as a unix socket dir. */
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly database: string;
}

const here = path.dirname(fileURLToPath(import.meta.url));
/** Repository root, found from this file's location (test/support/cluster.ts). */
export const repoRoot = path.resolve(here, '..', '..');
export const clusterScript = path.join(repoRoot, 'scripts', 'cluster.sh');
export const clusterEnvFile = path.join(repoRoot, 'scripts', 'cluster.env');

/** Parses `KEY=value` lines (`#` comments and blank lines ignored, optional surrounding quotes). */
export function parseClusterEnv(text: string): Record<string, string> {
  const values: Record<string, string> = {};
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const match = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (!match) throw new Error(`${clusterEnvFile}: cannot parse line ${JSON.stringify(raw)}`);
    let value = match[2]!.trim();
    if (value.length >= 2 && (value[0] === '"' || value[0] === "'") && value.endsWith(value[0])) {
      value = value.slice(1, -1);
    }
    values[match[1]!] = value;
  }
  return values;
}

/**
 * `PGPOOLS_CLUSTER_OFFSET=N` (1-9) selects an independent copy of the cluster (folder `<CLUSTER_DIR>-N`,
 * every port + N*10), the same rule scripts/cluster.sh applies.
 */
function withOffset(values: Record<string, string>): Record<string, string> {
  const raw = process.env.PGPOOLS_CLUSTER_OFFSET ?? '0';
  if (!/^[0-9]$/.test(raw)) throw new Error(`PGPOOLS_CLUSTER_OFFSET must be a digit 0-9, got ${JSON.stringify(raw)}`);
  const offset = Number(raw);
  if (offset === 0) return values;
  const shifted: Record<string, string> = { ...values, CLUSTER_DIR: `${values.CLUSTER_DIR}-${offset}` };
  for (const key of ['PG_PRIMARY_PORT', 'PG_REPLICA1_PORT', 'PG_REPLICA2_PORT', 'PGBOUNCER_PORT']) {
    shifted[key] = String(Number(values[key]) + offset * 10);
  }
  return shifted;
}

const env: Readonly<Record<string, string>> = Object.freeze(withOffset(parseClusterEnv(readFileSync(clusterEnvFile, 'utf8'))));

function setting(key: string): string {
  const value = env[key];
  if (value === undefined || value === '') throw new Error(`${clusterEnvFile}: ${key} is missing`);
  return value;
}

function intSetting(key: string): number {
  const value = Number(setting(key));
  if (!Number.isInteger(value) || value <= 0) throw new Error(`${clusterEnvFile}: ${key} is not a positive integer`);
  return value;
}

const clusterDir = path.resolve(repoRoot, setting('CLUSTER_DIR'));
const host = setting('PG_HOST');
const user = setting('PG_USER');
const password = setting('PG_PASSWORD');
const database = setting('PG_DATABASE');
const ports: Readonly<Record<ClusterNodeName, number>> = Object.freeze({
  primary: intSetting('PG_PRIMARY_PORT'),
  replica1: intSetting('PG_REPLICA1_PORT'),
  replica2: intSetting('PG_REPLICA2_PORT'),
  pgbouncer: intSetting('PGBOUNCER_PORT'),
});

const appConnection = (node: ClusterNodeName): NodeConnection =>
  Object.freeze({ host, port: ports[node], user, password, database });

export const clusterConfig = Object.freeze({
  repoRoot,
  clusterDir,
  socketDir: path.join(clusterDir, 'sockets'),
  logDir: path.join(clusterDir, 'logs'),
  host,
  user,
  password,
  database,
  superuser: setting('PG_SUPERUSER'),
  maxConnections: intSetting('PG_MAX_CONNECTIONS'),
  pgbouncer: appConnection('pgbouncer'),
  pgbouncerSettings: Object.freeze({
    poolMode: setting('PGBOUNCER_POOL_MODE'),
    maxClientConn: intSetting('PGBOUNCER_MAX_CLIENT_CONN'),
    defaultPoolSize: intSetting('PGBOUNCER_DEFAULT_POOL_SIZE'),
  }),
  primary: appConnection('primary'),
  replica1: appConnection('replica1'),
  replica2: appConnection('replica2'),
  ports,
  /** Raw KEY=value pairs of scripts/cluster.env. */
  env,
  connectionString,
  superuserSocket,
});

/** Connection fields of one node for the app user (host/port form, no URL); `extra` adds or overrides fields (e.g. the port of a relay). */
export function nodeOptions(node: ClusterNodeName, extra: Partial<NodeOptions> = {}): NodeOptions {
  const c = appConnection(node);
  return { host: c.host, port: c.port, user: c.user, password: c.password, database: c.database, ...extra };
}

/** `nodeOptions` of both replicas. */
export const replicaOptions = (extra: Partial<NodeOptions> = {}): NodeOptions[] => [nodeOptions('replica1', extra), nodeOptions('replica2', extra)];

function assertNode(node: string): asserts node is ClusterNodeName {
  if (!(clusterNodeNames as readonly string[]).includes(node)) {
    throw new Error(`unknown cluster node ${JSON.stringify(node)} (expected one of ${clusterNodeNames.join(', ')})`);
  }
}

/** The PostgreSQL node listening on `port` (e.g. what `inet_server_port()` returned). */
export function pgNodeAt(port: number | string): PgNodeName {
  const found = pgNodeNames.find((n) => ports[n] === Number(port));
  if (found === undefined) throw new Error(`port ${port} is not a cluster node`);
  return found;
}

/**
 * `postgres://app:<password>@127.0.0.1:<port>/app` for the app user on `node`; `overrides` replaces
 * user/password/database and `params` adds query parameters (e.g. `{ application_name: 'x' }`).
 */
export function connectionString(
  node: ClusterNodeName,
  overrides: { user?: string; password?: string; database?: string; params?: Record<string, string> } = {},
): string {
  assertNode(node);
  const u = encodeURIComponent(overrides.user ?? user);
  const p = encodeURIComponent(overrides.password ?? password);
  const db = encodeURIComponent(overrides.database ?? database);
  const query = overrides.params ? new URLSearchParams(overrides.params).toString() : '';
  return `postgres://${u}:${p}@${host}:${ports[node]}/${db}${query ? `?${query}` : ''}`;
}

/** Superuser over the unix socket of a PostgreSQL node (PgBouncer only knows the app user). */
export function superuserSocket(node: PgNodeName, databaseName: string = database): SuperuserSocket {
  assertNode(node);
  if ((node as string) === 'pgbouncer') throw new Error('pgbouncer has no superuser login; use the app user');
  return Object.freeze({ host: clusterConfig.socketDir, port: ports[node], user: clusterConfig.superuser, database: databaseName });
}

function runScript(args: readonly string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [clusterScript, ...args], { cwd: repoRoot, stdio: 'inherit' });
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      if (code === 0) resolve();
      else {
        const how = signal ? `signal ${signal}` : `exit code ${code}`;
        reject(new Error(`bash scripts/cluster.sh ${args.join(' ')} failed with ${how}`));
      }
    });
  });
}

let starting: Promise<void> | undefined;

/**
 * Runs `bash scripts/cluster.sh start` (idempotent; < 1 s when everything already runs) and
 * resolves once the primary accepts connections, both replicas stream and PgBouncer answers.
 * Concurrent calls in one process share one run; the script itself locks against other processes.
 */
export function ensureCluster(): Promise<void> {
  starting ??= runScript(['start']).finally(() => {
    starting = undefined;
  });
  return starting;
}

/**
 * Runs any cluster.sh subcommand, e.g. `clusterCtl('node-stop', 'replica1', 'immediate')`,
 * `clusterCtl('node-kill', 'primary')`, `clusterCtl('node-start', 'primary')`, `clusterCtl('wait')`.
 */
export function clusterCtl(...args: string[]): Promise<void> {
  if (args.length === 0) return Promise.reject(new Error('clusterCtl needs a subcommand'));
  return runScript(args);
}

export interface AdminQueryOptions {
  /** Who connects: `superuser` (unix socket, default on PostgreSQL nodes) or `app` (TCP, password; the only choice on pgbouncer). */
  as?: 'superuser' | 'app';
  /** Database to connect to (default: the app database; `pgbouncer` = PgBouncer's admin console). */
  database?: string;
  /** application_name of the admin session (default `cluster-admin`), so tests can tell it apart. */
  applicationName?: string;
}

/**
 * Runs one statement on `node` over a short-lived `pg.Client` and returns its rows.
 * Superuser by default (over the unix socket); PgBouncer is reached as the app user.
 */
export async function adminQuery<R extends pg.QueryResultRow = Record<string, any>>(
  node: ClusterNodeName,
  sql: string,
  values?: unknown[],
  options: AdminQueryOptions = {},
): Promise<R[]> {
  assertNode(node);
  const as = options.as ?? (node === 'pgbouncer' ? 'app' : 'superuser');
  if (as === 'superuser' && node === 'pgbouncer') throw new Error('pgbouncer has no superuser login; use { as: "app" }');
  const target: pg.ClientConfig =
    as === 'superuser' ? { ...superuserSocket(node as PgNodeName) } : { ...appConnection(node) };
  if (options.database) target.database = options.database;
  const client = new pg.Client({
    ...target,
    application_name: options.applicationName ?? 'cluster-admin',
    connectionTimeoutMillis: 5_000,
  });
  try {
    await client.connect();
    const result = await client.query<R>(sql, values);
    return result.rows;
  } finally {
    await client.end().catch(() => undefined);
  }
}
