import { ConsoleLogger, type INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { DatabaseService, PoolModule, type NodeOptions, type PoolEvent, type PoolModuleRootOptions } from 'nestjs-pg-pools';
import type { Subscription } from 'rxjs';
import type { PoolCluster } from '../../lib/core/pool-cluster.js';
import { getClusterToken } from '../../lib/pool.utils.js';
import { adminQuery, clusterConfig, clusterCtl, type ClusterNodeName, type PgNodeName } from '../support/cluster.js';
import { applicationNameFilter, type SessionCountOptions } from '../support/sessions.js';
import { TcpRelay } from './tcp-relay.js';

// Shared by the hygiene, PgBouncer and chaos e2e tests and by the chaos driver: connection
// options of the real nodes (from test/support/cluster.ts, so PGPOOLS_CLUSTER_OFFSET applies),
// server-side sessions by application_name (the application's and its `:`-suffixed companions,
// `<app>:monitor` and `<app>:roles`, unless `poolOnly`), and a deadline for one promise. Counts and polling
// waits are in test/support/sessions.ts and test/support/wait.ts.

export { adminQuery, clusterConfig, clusterCtl, type ClusterNodeName, type PgNodeName };

/** Connection fields of one node for the app user (host/port form, no URL). */
export function nodeOptions(node: ClusterNodeName, extra: Partial<NodeOptions> = {}): NodeOptions {
  const c = clusterConfig[node];
  return { host: c.host, port: c.port, user: c.user, password: c.password, database: c.database, ...extra };
}

export const replicaOptions = (extra: Partial<NodeOptions> = {}): NodeOptions[] => [
  nodeOptions('replica1', extra),
  nodeOptions('replica2', extra),
];

export interface SessionRow {
  pid: number;
  application_name: string;
  state: string | null;
  backend_start: Date;
  xact_start: Date | null;
  backend_xid: string | null;
}

/**
 * Server-side sessions of `applicationName` on one PostgreSQL node (empty list while it is down):
 * every connection the library opened for it, its `<app>:*` companions included, unless `poolOnly`.
 */
export async function sessions(node: PgNodeName, applicationName: string, options: Pick<SessionCountOptions, 'poolOnly'> = {}): Promise<SessionRow[]> {
  return adminQuery<SessionRow>(
    node,
    `SELECT pid, application_name, state, backend_start, xact_start, backend_xid::text AS backend_xid FROM pg_stat_activity WHERE ${applicationNameFilter(options)} AND pid <> pg_backend_pid()`,
    [applicationName],
    { applicationName: 'chaos-admin' },
  );
}

/** The pools' own sessions of `applicationName` on one node (`application_name` exactly). */
export function poolSessions(node: PgNodeName, applicationName: string): Promise<SessionRow[]> {
  return sessions(node, applicationName, { poolOnly: true });
}

/**
 * Terminates every backend of `applicationName` (its pools' sessions, `application_name` exactly)
 * on `node`; returns the pids. With `onlyIdle`, only sessions idle outside a transaction (pooled
 * connections), each re-checked in its own statement: pg_stat_activity is a snapshot per
 * statement, and a pid found idle may have begun a transaction since (terminating that one would
 * fail a transaction in flight, which is not what this asks for).
 */
export async function terminateSessionPids(node: PgNodeName, applicationName: string, onlyIdle = false): Promise<number[]> {
  const admin = { applicationName: 'chaos-admin' };
  if (!onlyIdle) {
    const rows = await adminQuery<{ pid: number }>(
      node,
      // MATERIALIZED: the filter runs before pg_terminate_backend(), never interleaved with it.
      `WITH targets AS MATERIALIZED (SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid())
       SELECT pid FROM targets WHERE pg_terminate_backend(pid)`,
      [applicationName],
      admin,
    );
    return rows.map((r) => r.pid);
  }
  const idle = await adminQuery<{ pid: number }>(node, "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND state = 'idle'", [applicationName], admin);
  const terminated: number[] = [];
  for (const { pid } of idle) {
    const rows = await adminQuery<{ done: boolean }>(
      node,
      "SELECT pg_terminate_backend(pid) AS done FROM pg_stat_activity WHERE pid = $1 AND state = 'idle'",
      [pid],
      admin,
    );
    if (rows[0]?.done === true) terminated.push(pid);
  }
  return terminated;
}

/** `terminateSessionPids`, counted. */
export async function terminateSessions(node: PgNodeName, applicationName: string, onlyIdle = false): Promise<number> {
  return (await terminateSessionPids(node, applicationName, onlyIdle)).length;
}

/** Rejects with a message naming `what` when `promise` has not settled after `ms`. */
export function within<T>(what: string, ms: number, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms}ms`)), ms);
    timer.unref();
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

/** Brings every node back (idempotent) and waits until both replicas stream again. */
export async function restoreCluster(): Promise<void> {
  await clusterCtl('start');
}

/** Keeps every log line (for "what the user sees" and "no password in logs" checks) instead of printing it. */
export class CapturingLogger extends ConsoleLogger {
  readonly lines: Array<{ level: string; context: string; message: string }> = [];
  constructor(private readonly echo = false) {
    super();
  }
  #push(level: string, message: unknown, context: unknown): void {
    this.lines.push({ level, context: String(context), message: String(message) });
    if (this.echo) process.stdout.write(`[${level}] ${String(message).split('\n')[0]}\n`);
  }
  override log(message: unknown, context?: string): void {
    this.#push('log', message, context);
  }
  override warn(message: unknown, context?: string): void {
    this.#push('warn', message, context);
  }
  override error(message: unknown, stackOrContext?: string, context?: string): void {
    this.#push('error', message, context ?? stackOrContext);
  }
  override debug(): void {}
  override verbose(): void {}
  warnings(fragment: string): string[] {
    return this.lines.filter((l) => l.level === 'warn' && l.message.includes(fragment)).map((l) => l.message);
  }
}

export interface TestApp {
  app: INestApplication;
  db: DatabaseService;
  /** The database's internals (node pools, counters, routing state) for white-box checks. */
  cluster: PoolCluster;
  logger: CapturingLogger;
  events: PoolEvent[];
  close(): Promise<void>;
}

/** A Nest application with one `PoolModule.forRoot(options)`, its event stream recorded. */
export async function startApp(options: PoolModuleRootOptions, echoLogs = false): Promise<TestApp> {
  const moduleRef = await Test.createTestingModule({
    imports: [PoolModule.forRoot({ sizingAdvisor: false, metrics: { enabled: false }, alerts: { enabled: false }, ...options })],
  }).compile();
  const logger = new CapturingLogger(echoLogs);
  const app = moduleRef.createNestApplication({ logger });
  await app.init();
  const db = app.get(DatabaseService);
  const cluster = app.get<PoolCluster>(getClusterToken(options.name));
  const events: PoolEvent[] = [];
  const subscription: Subscription = db.events$.subscribe((e) => events.push(e));
  let closed: Promise<void> | undefined;
  return {
    app,
    db,
    cluster,
    logger,
    events,
    close: () => {
      closed ??= app.close().finally(() => subscription.unsubscribe());
      return closed;
    },
  };
}

/**
 * `startApp(options)` with the primary reached through a new TcpRelay in front of the real primary,
 * so the test can take "the network" away; `t.close()` closes the application, then the relay.
 */
export async function startAppBehindRelay(options: Omit<PoolModuleRootOptions, 'primary'>): Promise<{ t: TestApp; relay: TcpRelay }> {
  const relay = await new TcpRelay(clusterConfig.host, clusterConfig.primary.port).start();
  let app: TestApp;
  try {
    app = await startApp({ ...options, primary: { ...nodeOptions('primary'), port: relay.port } });
  } catch (err) {
    await relay.close();
    throw err;
  }
  return { t: { ...app, close: () => app.close().finally(() => relay.close()) }, relay };
}

/** The error `PoolModule.forRoot(options)` fails with while the application starts (or `undefined`). */
export async function startupError(options: PoolModuleRootOptions): Promise<unknown> {
  let app: INestApplication | undefined;
  try {
    const moduleRef = await Test.createTestingModule({ imports: [PoolModule.forRoot({ sizingAdvisor: false, ...options })] }).compile();
    app = moduleRef.createNestApplication({ logger: false });
    await app.init();
    return undefined;
  } catch (err) {
    return err;
  } finally {
    await app?.close();
  }
}
