import type { INestApplication, Type } from '@nestjs/common';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import type { NodeOptions, PoolModuleRootOptions } from 'nestjs-pg-pools';
import { adminQuery, clusterCtl, nodeOptions, pgNodeAt, pgNodeNames, type PgNodeName } from './cluster.js';
import { sleep, waitFor } from './wait.js';

// Helpers of the routing e2e tests (test/routing-*.e2e-spec.ts). Every port and credential comes
// from test/support/cluster.ts, so PGPOOLS_CLUSTER_OFFSET=N runs them on a private cluster copy.

export const pgNodes = pgNodeNames;

/** Connection fields of one server as the app user; the library names the node after it. */
export function nodeOf(node: PgNodeName, extra: Partial<NodeOptions> = {}): NodeOptions {
  return nodeOptions(node, { name: node, ...extra });
}

/** `PoolModule.forRoot()` options for the real primary + both replicas, small pools, quiet extras. */
export function routingOptions(applicationName: string, extra: Partial<PoolModuleRootOptions> = {}): PoolModuleRootOptions {
  const { routing, ...rest } = extra;
  return {
    preset: 'test',
    applicationName,
    primary: nodeOf('primary'),
    replicas: [nodeOf('replica1'), nodeOf('replica2')],
    min: 1,
    max: 4,
    sizingAdvisor: false,
    retryAttempts: 1,
    acquireTimeoutMs: 3000,
    alerts: { enabled: false },
    metrics: { enabled: false },
    env: {},
    ...rest,
    routing: { lagCheckIntervalMs: 200, ...routing },
  };
}

/** Which server answered: its name, from the port `inet_server_port()` returned. */
export const serverAt = pgNodeAt;

export interface Where {
  node: PgNodeName;
  recovery: boolean;
  pid: number;
}

export const WHERE_SQL = 'SELECT inet_server_port() AS port, pg_is_in_recovery() AS recovery, pg_backend_pid() AS pid';

/** Runs `WHERE_SQL` through `db.query` (the scope decides the node), `db.primary`, `db.replica` or a client. */
export async function where(db: { query(text: string): Promise<{ rows: any[] }> }): Promise<Where> {
  const row = (await db.query(WHERE_SQL)).rows[0] as { port: number; recovery: boolean; pid: number };
  return { node: serverAt(row.port), recovery: row.recovery, pid: row.pid };
}

export type AdapterName = 'express' | 'fastify';
export const adapters: readonly AdapterName[] = ['express', 'fastify'];

/** Compiles `module` and starts it on the Express or the Fastify adapter (not listening; supertest drives it). */
export async function createHttpApp(module: Type<unknown>, adapter: AdapterName): Promise<INestApplication> {
  const moduleRef = await Test.createTestingModule({ imports: [module] }).compile();
  if (adapter === 'express') {
    const app = moduleRef.createNestApplication({ logger: false });
    await app.init();
    return app;
  }
  const app = moduleRef.createNestApplication<NestFastifyApplication>(new FastifyAdapter(), { logger: false });
  await app.init();
  await app.getHttpAdapter().getInstance().ready();
  return app;
}

/** Counts per node of a list of answers. */
export function tally(nodes: readonly PgNodeName[]): Record<PgNodeName, number> {
  const counts: Record<PgNodeName, number> = { primary: 0, replica1: 0, replica2: 0 };
  for (const n of nodes) counts[n]++;
  return counts;
}

/**
 * Waits until `replica` has replayed every record the primary had made when called: its insert
 * position (asynchronous commits included), taken back over a WAL page header it may sit just past.
 */
export async function waitForReplay(replica: PgNodeName, timeoutMs = 15_000): Promise<void> {
  const sql = "SELECT (CASE WHEN (l - '0/0'::pg_lsn) % 8192 = 24 THEN l - 24 ELSE l END)::text AS lsn FROM pg_current_wal_insert_lsn() AS l";
  const [{ lsn }] = (await adminQuery<{ lsn: string }>('primary', sql)) as [{ lsn: string }];
  await waitFor(
    `${replica} to replay ${lsn}`,
    async () => (await adminQuery<{ ok: boolean }>(replica, 'SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS ok', [lsn]))[0]!.ok,
    timeoutMs,
    50,
  );
}

/**
 * `workers` loops of `read` (given the loop's running count, so a loop can alternate between
 * reads), a short pause between, until stopped (or 25 s at most); `served` is the node of each read.
 */
export class ReadLoad {
  readonly served: PgNodeName[] = [];
  readonly failures: unknown[] = [];
  #running = true;
  readonly #loops: Promise<void>[];

  constructor(read: (i: number) => Promise<{ node: PgNodeName }>, workers = 6) {
    const deadline = Date.now() + 25_000;
    this.#loops = Array.from({ length: workers }, async (_, worker) => {
      let i = worker;
      while (this.#running && Date.now() < deadline) {
        try {
          this.served.push((await read(i++)).node);
        } catch (err) {
          this.failures.push(err);
        }
        await sleep(2);
      }
    });
  }

  /** Waits until `count` more reads were served after this call; returns what they hit. */
  async next(count: number, what: string, timeoutMs = 10_000): Promise<PgNodeName[]> {
    const from = this.served.length;
    await waitFor(what, () => this.served.length >= from + count, timeoutMs, 10);
    return this.served.slice(from, from + count);
  }

  async stop(): Promise<void> {
    this.#running = false;
    await Promise.all(this.#loops);
  }
}

/** Makes `replica` apply WAL `delay` late (recovery_min_apply_delay, e.g. '3s'); resolves once the setting is live. */
export async function delayReplay(replica: PgNodeName, delay: string): Promise<void> {
  await adminQuery(replica, `ALTER SYSTEM SET recovery_min_apply_delay = '${delay}'`);
  await adminQuery(replica, 'SELECT pg_reload_conf()');
  await waitFor(`the delay to apply on ${replica}`, async () => (await adminQuery(replica, 'SHOW recovery_min_apply_delay'))[0]!.recovery_min_apply_delay === delay, 5000, 25);
}

/**
 * Undoes `delayReplay`, drops `table` on the primary (as the app user) and waits until `replica` replayed that;
 * the cluster is started again (if a test stopped a node) whatever happens. Then the delay is checked to be gone.
 */
export async function undoDelayReplay(replica: PgNodeName, table: string): Promise<void> {
  try {
    await adminQuery(replica, 'ALTER SYSTEM RESET recovery_min_apply_delay');
    await adminQuery(replica, 'SELECT pg_reload_conf()');
    await adminQuery('primary', `DROP TABLE IF EXISTS ${table}`, [], { as: 'app' });
    await waitForReplay(replica);
  } finally {
    await clusterCtl('start');
  }
  expect((await adminQuery(replica, 'SHOW recovery_min_apply_delay'))[0]!.recovery_min_apply_delay).toBe('0');
}

/**
 * Creates `table` (`columns`) on the primary as the app user before the file's tests and waits until
 * both replicas replayed it; drops it after them.
 */
export function useReplicatedTable(table: string, columns: string): void {
  beforeAll(async () => {
    await adminQuery('primary', `DROP TABLE IF EXISTS ${table}; CREATE TABLE ${table} (${columns})`, [], { as: 'app' });
    await waitForReplay('replica1');
    await waitForReplay('replica2');
  });
  afterAll(async () => {
    await adminQuery('primary', `DROP TABLE IF EXISTS ${table}`, [], { as: 'app' });
  });
}
