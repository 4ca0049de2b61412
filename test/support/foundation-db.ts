import type { LoggerService } from '@nestjs/common';
import type pg from 'pg';
import type { NodeOptions } from 'nestjs-pg-pools';
import { adminQuery as clusterAdminQuery, clusterConfig, pgNodeAt, pgNodeNames } from './cluster.js';
import { sessionCounts as sessionCountsByNode } from './sessions.js';

// Helpers of the foundation e2e tests, by server port: cluster settings, superuser queries and
// pg_stat_activity counts by application_name (all from test/support/cluster.ts and sessions.ts),
// and log/stdout capture for "no password anywhere" checks.

export const foundationCluster = {
  host: clusterConfig.host,
  user: clusterConfig.user,
  password: clusterConfig.password,
  database: clusterConfig.database,
  superuser: clusterConfig.superuser,
  socketDir: clusterConfig.socketDir,
  maxConnections: clusterConfig.maxConnections,
  ports: {
    primary: clusterConfig.ports.primary,
    replica1: clusterConfig.ports.replica1,
    replica2: clusterConfig.ports.replica2,
  },
};

export const serverPorts = [foundationCluster.ports.primary, foundationCluster.ports.replica1, foundationCluster.ports.replica2];

/** `postgres://app:<password>@127.0.0.1:<port>/app` */
export function nodeUrl(port: number, password = foundationCluster.password): string {
  const { user, host, database } = foundationCluster;
  return `postgres://${user}:${encodeURIComponent(password)}@${host}:${port}/${database}`;
}

/** Connection fields of one server (host/port form). */
export function nodeOptions(port: number, extra: Partial<NodeOptions> = {}): NodeOptions {
  const { host, user, password, database } = foundationCluster;
  return { host, port, user, password, database, ...extra };
}

export const primaryNode = (extra?: Partial<NodeOptions>) => nodeOptions(foundationCluster.ports.primary, extra);
export const replicaNodes = () => [nodeOptions(foundationCluster.ports.replica1), nodeOptions(foundationCluster.ports.replica2)];

/** One statement as the superuser over the unix socket of the server on `port`. */
export function adminQuery<R extends pg.QueryResultRow = any>(port: number, text: string, values?: unknown[]): Promise<R[]> {
  return clusterAdminQuery<R>(pgNodeAt(port), text, values, { applicationName: 'foundation-admin' });
}

/**
 * Server-side sessions (client backends) of the pools of this application, per server port: the
 * application_name exactly, so the library's `<app>:monitor` / `<app>:roles` connections are not counted.
 */
export async function sessionCounts(applicationName: string, options: { poolOnly?: boolean } = { poolOnly: true }): Promise<Record<number, number>> {
  const byNode = await sessionCountsByNode(applicationName, { clientBackendsOnly: true, ...options });
  return Object.fromEntries(pgNodeNames.map((node) => [clusterConfig.ports[node], byNode[node]]));
}

/** The pools' sessions of this application on all servers together. */
export async function totalSessions(applicationName: string): Promise<number> {
  return Object.values(await sessionCounts(applicationName)).reduce((a, b) => a + b, 0);
}

/** Every session the library opened for this application, its `<app>:*` companions included, on all servers (the leak check). */
export async function librarySessions(applicationName: string): Promise<number> {
  return Object.values(await sessionCounts(applicationName, { poolOnly: false })).reduce((a, b) => a + b, 0);
}

/** Polls `read` until `accept` holds or `timeoutMs` passes; returns the last value either way. */
export async function waitUntil<T>(read: () => Promise<T> | T, accept: (value: T) => boolean, timeoutMs = 3000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let value = await read();
  while (!accept(value) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, everyMs).unref());
    value = await read();
  }
  return value;
}

/** Terminates this application's sessions on `port` (only `idle` ones unless `state` is null). Returns the pids. */
export async function terminateSessions(port: number, applicationName: string, state: string | null = 'idle'): Promise<number[]> {
  const rows = await adminQuery<{ pid: number }>(
    port,
    // MATERIALIZED: the filter must run before pg_terminate_backend(), never interleaved with it.
    `WITH targets AS MATERIALIZED (
       SELECT pid FROM pg_stat_activity
        WHERE application_name = $1 AND backend_type = 'client backend' AND pid <> pg_backend_pid()
          AND ($2::text IS NULL OR state = $2))
     SELECT pid FROM targets WHERE pg_terminate_backend(pid)`,
    [applicationName, state],
  );
  return rows.map((r) => r.pid);
}

/** A Nest logger that keeps every call (level, message, extra params) in memory. */
export class CapturingLogger implements LoggerService {
  readonly entries: Array<{ level: string; message: string; params: string }> = [];
  log(message: unknown, ...params: unknown[]) {
    this.#push('log', message, params);
  }
  error(message: unknown, ...params: unknown[]) {
    this.#push('error', message, params);
  }
  warn(message: unknown, ...params: unknown[]) {
    this.#push('warn', message, params);
  }
  debug(message: unknown, ...params: unknown[]) {
    this.#push('debug', message, params);
  }
  verbose(message: unknown, ...params: unknown[]) {
    this.#push('verbose', message, params);
  }
  fatal(message: unknown, ...params: unknown[]) {
    this.#push('fatal', message, params);
  }
  /** Everything logged, messages and params (stacks included), for secret checks. */
  get text(): string {
    return this.entries.map((e) => `[${e.level}] ${e.message} ${e.params}`).join('\n');
  }
  messages(level: string): string[] {
    return this.entries.filter((e) => e.level === level).map((e) => e.message);
  }
  #push(level: string, message: unknown, params: unknown[]) {
    this.entries.push({ level, message: show(message), params: params.map(show).join(' ') });
  }
}

function show(value: unknown): string {
  if (value instanceof Error) return `${value.message}\n${value.stack ?? ''}`;
  if (typeof value === 'string') return value;
  try {
    return JSON.stringify(value);
  } catch {
    return String(value);
  }
}

/** Captures everything written to stdout and stderr (still passing it through) until `restore()`. */
export function captureOutput(): { readonly text: string; restore(): void } {
  const chunks: string[] = [];
  const out = process.stdout.write.bind(process.stdout);
  const err = process.stderr.write.bind(process.stderr);
  const tap =
    (write: typeof out) =>
    (chunk: unknown, ...args: unknown[]): boolean => {
      chunks.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk as Uint8Array).toString('utf8'));
      return (write as (...a: unknown[]) => boolean)(chunk, ...args);
    };
  process.stdout.write = tap(out) as typeof process.stdout.write;
  process.stderr.write = tap(err) as typeof process.stderr.write;
  return {
    get text() {
      return chunks.join('');
    },
    restore() {
      process.stdout.write = out;
      process.stderr.write = err;
    },
  };
}
