import { jest } from '@jest/globals';
import { type INestApplication } from '@nestjs/common';
import request from 'supertest';
import type { Subscription } from 'rxjs';
import { DatabaseService, PoolHealthIndicator, PrimaryUnavailableError, isConnectionError, type PoolEvent, type PoolModuleRootOptions } from 'nestjs-pg-pools';
import { adminQuery, clusterConfig, clusterCtl, connectionString, pgNodeAt, type PgNodeName } from '../support/cluster.js';
import { sleep, waitFor } from '../support/wait.js';
import { TIME_MARGIN_MS } from '../support/margin.js';
import { rebuildWithTable } from '../support/failover.js';
import { buildApp } from '../support/app.js';

// Following the primary on the real cluster: under a bounded mixed load the primary is stopped
// hard (`pg_ctl stop -m immediate`) and replica1 promoted (`pg_ctl promote`), as Patroni, repmgr
// or a managed service do. Writes must come back on replica1 within 5 s of the promotion (the
// figure is printed), reads never fail, every acknowledged write on replica1 is there. Then the
// old primary comes back as a primary (split brain: fenced, no write reaches it), is rebuilt as a
// standby of replica1 (back in read rotation), and a multi-host URL finds the primary whatever
// host comes first. afterAll rebuilds the initial topology.

const APP = 'e2e-failover-promotion';
const TABLE = 'failover_promotion_e2e';

jest.setTimeout(120_000);

interface Ack {
  id: number;
  node: PgNodeName;
  at: number;
}

const options = (extra: Partial<PoolModuleRootOptions> = {}): PoolModuleRootOptions => ({
  // The password as its own field (pg-pool hides it from the client config: a promoted node's new sessions must still log in).
  primary: { ...clusterConfig.primary },
  replicas: [{ ...clusterConfig.replica1 }, { connectionString: connectionString('replica2') }],
  applicationName: APP,
  preset: 'test',
  retryAttempts: 1,
  acquireTimeoutMs: 2000,
  // Writes fail at once while no node is the primary; holding them is test/failover/failover-hold-writes.e2e-spec.ts.
  failover: { holdWritesMs: 0 },
  ...extra,
});

async function startApp(extra: Partial<PoolModuleRootOptions> = {}): Promise<INestApplication> {
  return (await buildApp(options(extra), { providers: [PoolHealthIndicator] })).app;
}

/** Bounded mixed load: `writers` insert loops and `readers` replica-read loops until stopped (60 s at most). */
class MixedLoad {
  readonly acks: Ack[] = [];
  readonly writeErrors: Array<{ at: number; err: unknown }> = [];
  readonly reads: Array<{ at: number; node: PgNodeName }> = [];
  readonly readErrors: unknown[] = [];
  #running = true;
  readonly #loops: Promise<void>[];

  constructor(db: DatabaseService, writers = 3, readers = 3) {
    const deadline = Date.now() + 60_000;
    const write = async () => {
      while (this.#running && Date.now() < deadline) {
        try {
          const res = await db.query<{ id: number; port: number }>(`INSERT INTO ${TABLE} (v) VALUES (1) RETURNING id, inet_server_port() AS port`);
          this.acks.push({ id: res.rows[0]!.id, node: pgNodeAt(res.rows[0]!.port), at: Date.now() });
        } catch (err) {
          this.writeErrors.push({ at: Date.now(), err });
          await sleep(20);
        }
        await sleep(5);
      }
    };
    const read = async () => {
      while (this.#running && Date.now() < deadline) {
        try {
          const res = await db.replica.query<{ port: number }>('SELECT inet_server_port() AS port');
          this.reads.push({ at: Date.now(), node: pgNodeAt(res.rows[0]!.port) });
        } catch (err) {
          this.readErrors.push(err);
        }
        await sleep(5);
      }
    };
    this.#loops = [...Array.from({ length: writers }, write), ...Array.from({ length: readers }, read)];
  }

  async stop(): Promise<void> {
    this.#running = false;
    await Promise.all(this.#loops);
  }
}

async function primaryNow(app: INestApplication): Promise<{ node: string; since: number | undefined; fenced: string[] }> {
  const health = (await app.get(PoolHealthIndicator).check('db', { timeoutMs: 1000 }).catch((e: { response?: unknown; causes?: unknown }) => e.causes ?? e.response)) as Record<string, any>;
  const db = health.db ?? health;
  return { node: db.topology?.primary, since: db.topology?.primarySince, fenced: db.topology?.fenced ?? [] };
}

describe('failover: follow the primary (real cluster)', () => {
  let app: INestApplication | undefined;
  let events: PoolEvent[] = [];
  let subscription: Subscription | undefined;

  beforeAll(async () => {
    await rebuildWithTable(TABLE, 'replica1');
    app = await startApp();
    subscription = app.get(DatabaseService).events$.subscribe((e) => events.push(e));
  });

  afterAll(async () => {
    subscription?.unsubscribe();
    await app?.close();
    await clusterCtl('rebuild');
    await adminQuery('primary', `DROP TABLE IF EXISTS ${TABLE}`);
  });

  it('(1) writes come back on the promoted replica1 within 2 s; reads never fail; acknowledged writes are there', async () => {
    const db = app!.get(DatabaseService);
    expect((await primaryNow(app!)).node).toBe('primary');
    const load = new MixedLoad(db);
    let promotedAt = 0;
    try {
      await waitFor('writes on the primary', () => load.acks.filter((a) => a.node === 'primary').length >= 20, 10_000);
      const stoppedAt = Date.now();
      await clusterCtl('node-stop', 'primary', 'immediate');
      await waitFor('a failed write after the stop', () => load.writeErrors.some((e) => e.at > stoppedAt), 10_000);
      await sleep(500);
      await clusterCtl('promote', 'replica1');
      promotedAt = Date.now();
      const first = await waitFor('a write acknowledged by replica1', () => load.acks.find((a) => a.node === 'replica1' && a.at >= promotedAt - 1000), 10_000);
      const recoveryMs = Math.max(0, first.at - promotedAt);
      console.log(`failover: first write on replica1 ${recoveryMs}ms after pg_ctl promote finished`);
      // The claim: within 2 s of pg_ctl promote, + TIME_MARGIN_MS on 2 shared cores.
      expect(recoveryMs).toBeLessThanOrEqual(2000 + TIME_MARGIN_MS);
      await waitFor('50 more writes on replica1', () => load.acks.filter((a) => a.node === 'replica1').length >= 50, 10_000);
    } finally {
      await load.stop();
    }
    expect(load.readErrors).toEqual([]);
    expect(load.reads.length).toBeGreaterThan(50);
    // Every failed write failed visibly, as a connection error or PrimaryUnavailableError; none after recovery.
    for (const { err } of load.writeErrors) expect(isConnectionError(err) || err instanceof PrimaryUnavailableError).toBe(true);
    expect(load.writeErrors.some((e) => e.err instanceof PrimaryUnavailableError)).toBe(true);
    const firstOk = load.acks.find((a) => a.node === 'replica1')!.at;
    expect(load.writeErrors.filter((e) => e.at > firstOk + 100)).toEqual([]);
    const onReplica1 = load.acks.filter((a) => a.node === 'replica1').map((a) => a.id);
    const present = await adminQuery<{ id: number }>('replica1', `SELECT id FROM ${TABLE} WHERE id = ANY($1::int[])`, [onReplica1]);
    expect(present.length).toBe(onReplica1.length);
    const unavailable = load.writeErrors.find((e) => e.err instanceof PrimaryUnavailableError)!.err as PrimaryUnavailableError;
    expect(unavailable.tried.map((t) => t.node)).toEqual(['primary', 'replica-1', 'replica-2']);
    expect(unavailable.message).toContain('will be checked again at');
    const now = await primaryNow(app!);
    expect(now.node).toBe('replica-1');
    expect(now.since).toBeGreaterThanOrEqual(promotedAt - 2000);
    expect(events.some((e) => e.type === 'primary-changed' && e.node === 'replica-1' && e.previous === 'primary')).toBe(true);
  });

  it('(2) the old primary started again as a primary is fenced: no write reaches it, health reports it', async () => {
    const db = app!.get(DatabaseService);
    events = [];
    await clusterCtl('node-start', 'primary');
    await waitFor('the split-brain event', () => events.find((e) => e.type === 'split-brain' && e.node === 'primary'), 10_000);
    const before = Number((await adminQuery<{ n: string }>('primary', `SELECT count(*) AS n FROM ${TABLE}`))[0]!.n);
    const served: PgNodeName[] = [];
    for (let i = 0; i < 30; i++) {
      const res = await db.query<{ port: number }>(`INSERT INTO ${TABLE} (v) VALUES (2) RETURNING inet_server_port() AS port`);
      served.push(pgNodeAt(res.rows[0]!.port));
      const read = await db.replica.query<{ port: number }>('SELECT inet_server_port() AS port');
      served.push(pgNodeAt(read.rows[0]!.port));
    }
    expect(served).not.toContain('primary');
    const after = Number((await adminQuery<{ n: string }>('primary', `SELECT count(*) AS n FROM ${TABLE}`))[0]!.n);
    expect(after).toBe(before);
    const now = await primaryNow(app!);
    expect(now.node).toBe('replica-1');
    expect(now.fenced).toEqual(['primary']);
    // A subscriber that arrives during the split brain (e.g. one found at start) learns of it at once.
    const late: PoolEvent[] = [];
    db.events$.subscribe((e) => late.push(e)).unsubscribe();
    expect(late).toMatchObject([{ type: 'split-brain', node: 'primary', writer: 'replica-1', primaries: [{ node: 'replica-1' }, { node: 'primary' }] }]);
    // Metrics: the role gauge and the JSON topology.
    const prom = (await request(app!.getHttpServer()).get('/metrics').expect(200)).text;
    expect(prom).toMatch(/^db_node_role\{database="default",node="primary",role="replica",discovered="fenced"\} 1$/m);
    expect(prom).toMatch(/^db_node_role\{database="default",node="replica-1",role="primary",discovered="primary"\} 1$/m);
    const json = (await request(app!.getHttpServer()).get('/metrics/db-pool').expect(200)).body as { databases: Record<string, any> };
    expect(json.databases.default.topology).toMatchObject({ primary: 'replica-1', writable: true, fenced: ['primary'] });
    expect(json.databases.default.nodes.primary.topologyRole).toBe('fenced');
  });

  it('(3) rebuilt as a standby of replica1, the old primary returns to read rotation', async () => {
    const db = app!.get(DatabaseService);
    events = [];
    await clusterCtl('demote', 'primary', 'replica1');
    await waitFor('the old primary back as a replica', () => events.find((e) => e.type === 'node-role-changed' && e.node === 'primary' && e.to === 'replica'), 10_000);
    const served = await waitFor(
      'a read on the old primary',
      async () => {
        const res = await db.replica.query<{ port: number; ro: boolean }>('SELECT inet_server_port() AS port, pg_is_in_recovery() AS ro');
        return pgNodeAt(res.rows[0]!.port) === 'primary' ? res.rows[0] : undefined;
      },
      10_000,
      5,
    );
    expect(served.ro).toBe(true);
    expect((await primaryNow(app!)).fenced).toEqual([]);
  });

  it('(4) a multi-host URL finds the primary whichever host is first', async () => {
    const { user, password, database, host, ports } = clusterConfig;
    const multi = (order: PgNodeName[]) =>
      `postgres://${user}:${encodeURIComponent(password)}@${order.map((n) => `${host}:${ports[n]}`).join(',')}/${database}?target_session_attrs=read-write`;
    const check = async (order: PgNodeName[], expected: PgNodeName) => {
      const other = await startApp({ primary: { connectionString: multi(order) }, replicas: [] });
      try {
        const res = await other.get(DatabaseService).query<{ port: number; ro: boolean }>('INSERT INTO ' + TABLE + ' (v) VALUES (4) RETURNING inet_server_port() AS port, pg_is_in_recovery() AS ro');
        expect({ order, node: pgNodeAt(res.rows[0]!.port), ro: res.rows[0]!.ro }).toEqual({ order, node: expected, ro: false });
      } finally {
        await other.close();
      }
    };
    // replica1 is the primary now.
    await check(['primary', 'replica1', 'replica2'], 'replica1');
    await check(['replica2', 'primary', 'replica1'], 'replica1');
    await app?.close();
    app = undefined;
    await clusterCtl('rebuild');
    await check(['replica1', 'replica2', 'primary'], 'primary');
    await check(['primary', 'replica2', 'replica1'], 'primary');
  });
});
