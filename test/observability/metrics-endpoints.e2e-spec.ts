import { Controller, Get, Post, type INestApplication } from '@nestjs/common';
import type { Pool, PoolClient } from 'pg';
import request from 'supertest';
import { DatabaseService, getPoolToken, ReadOnly } from 'nestjs-pg-pools';
import { clusterConfig, nodeOptions } from '../support/cluster.js';
import { parsePrometheusText, sampleValue, type PromFamily } from '../support/observability.js';
import { sessionCount, waitForNoSessions } from '../support/sessions.js';
import { waitFor } from '../support/wait.js';
import { buildApp, type TestApp } from '../support/app.js';

// GET /metrics/db-pool and GET /metrics of a real primary + 2 replicas: the JSON numbers equal
// the pg.Pool counts (at rest, with clients held, with callers waiting) and pg_stat_activity;
// /metrics is valid Prometheus text whose counters move with traffic, reads on replica labels.

const APP = 'e2e-metrics-endpoints';
const PRIMARY = 'primary';
const REPLICAS = ['replica-1', 'replica-2'];

@Controller('items')
class ItemsController {
  constructor(private readonly db: DatabaseService) {}

  @Get('read')
  @ReadOnly()
  async read(): Promise<{ port: number }> {
    const res = await this.db.query<{ port: number }>('SELECT inet_server_port() AS port');
    return { port: res.rows[0]!.port };
  }

  @Post('write')
  async write(): Promise<{ port: number; replica: boolean }> {
    const res = await this.db.query<{ port: number; replica: boolean }>('SELECT inet_server_port() AS port, pg_is_in_recovery() AS replica');
    return res.rows[0]!;
  }
}

interface NodeJson {
  role: string;
  size: number;
  idle: number;
  free: number;
  inUse: number;
  used: number;
  waiting: number;
  min: number;
  max: number;
  lagMs: number | null;
  banned: boolean;
  breaker: { state: string };
  acquireMs: { count: number; p50: number; p95: number; p99: number };
  counters: Record<string, number>;
}

describe('metrics endpoints (real cluster)', () => {
  let t: TestApp;
  let app: INestApplication;
  let db: DatabaseService;
  let pools: Record<string, Pool>;
  const held: PoolClient[] = [];

  beforeAll(async () => {
    t = await buildApp(
      {
        preset: 'test',
        applicationName: APP,
        primary: nodeOptions('primary', { min: 2, max: 4 }),
        replicas: [nodeOptions('replica1'), nodeOptions('replica2')],
        min: 2,
        max: 5,
        acquireTimeoutMs: 5000,
        sizingAdvisor: false,
        routing: { lagCheckIntervalMs: 60_000, maxReplicationLagMs: 0 },
        alerts: { log: false },
      },
      { controllers: [ItemsController] },
    );
    app = t.app;
    db = app.get(DatabaseService);
    const replicaPools = app.get<Pool[]>(getPoolToken(undefined, 'replicas'));
    pools = { [PRIMARY]: app.get<Pool>(getPoolToken()), [REPLICAS[0]!]: replicaPools[0]!, [REPLICAS[1]!]: replicaPools[1]! };
  }, 30_000);

  afterAll(async () => {
    for (const c of held.splice(0)) c.release();
    await t?.close();
    await waitForNoSessions(APP, { timeoutMs: 5000, everyMs: 100 });
  }, 30_000);

  async function json(): Promise<{ at: number; databases: Record<string, { nodes: Record<string, NodeJson> }> }> {
    const res = await request(app.getHttpServer()).get('/metrics/db-pool').expect(200).expect('content-type', /application\/json/);
    return res.body;
  }

  async function prometheus(): Promise<Map<string, PromFamily>> {
    const res = await request(app.getHttpServer()).get('/metrics').expect(200);
    // Express 4 (NestJS 11) puts charset first; the media type and its version are what Prometheus reads.
    expect(res.headers['content-type']).toMatch(/^text\/plain;/);
    expect(res.headers['content-type']).toContain('version=0.0.4');
    return parsePrometheusText(res.text);
  }

  function expectMatchesPool(n: NodeJson, pool: Pool): void {
    expect({ size: n.size, idle: n.idle, free: n.free, inUse: n.inUse, used: n.used, waiting: n.waiting }).toEqual({
      size: pool.totalCount,
      idle: pool.idleCount,
      free: pool.idleCount,
      inUse: pool.totalCount - pool.idleCount,
      used: pool.totalCount - pool.idleCount,
      waiting: pool.waitingCount,
    });
  }

  it('lists every node of the database with the shape users read', async () => {
    const body = await json();
    expect(Object.keys(body.databases)).toEqual(['default']);
    const nodes = body.databases.default!.nodes;
    expect(Object.keys(nodes)).toEqual([PRIMARY, ...REPLICAS]);
    expect(nodes[PRIMARY]).toMatchObject({ role: 'primary', min: 2, max: 4, lagMs: null, banned: false, breaker: { state: 'closed' } });
    for (const r of REPLICAS) {
      expect(nodes[r]).toMatchObject({ role: 'replica', min: 2, max: 5, banned: false, breaker: { state: 'closed' } });
    }
    await waitFor('replica lag measured', async () => {
      const now = (await json()).databases.default!.nodes;
      return REPLICAS.every((r) => typeof now[r]!.lagMs === 'number' && now[r]!.lagMs! >= 0);
    });
    for (const key of ['acquired', 'acquireTimeouts', 'errors', 'leaks', 'evictions', 'slowQueries', 'routedReads', 'fallbacks', 'retries', 'bans']) {
      expect(typeof nodes[PRIMARY]!.counters[key]).toBe('number');
    }
  });

  it('reports the same counts as the pg.Pool objects and pg_stat_activity at rest', async () => {
    await waitFor('pools idle', () => Object.values(pools).every((p) => p.totalCount === p.idleCount));
    const nodes = (await json()).databases.default!.nodes;
    for (const [name, pool] of Object.entries(pools)) expectMatchesPool(nodes[name]!, pool);
    const nodeOf = { [PRIMARY]: 'primary', [REPLICAS[0]!]: 'replica1', [REPLICAS[1]!]: 'replica2' } as const;
    for (const [name, node] of Object.entries(nodeOf)) {
      expect(await sessionCount(node, APP, { poolOnly: true })).toBe(nodes[name]!.size);
    }
  });

  it('reports held clients and waiting callers exactly as the pools count them', async () => {
    for (let i = 0; i < 4; i++) held.push(await db.primary.pool.connect());
    const waiters = [db.primary.query('SELECT 1'), db.primary.query('SELECT 2')];
    try {
      await waitFor('two callers waiting', () => pools[PRIMARY]!.waitingCount === 2);

      const nodes = (await json()).databases.default!.nodes;
      expect(nodes[PRIMARY]).toMatchObject({ size: 4, idle: 0, inUse: 4, used: 4, free: 0, waiting: 2, max: 4 });
      expectMatchesPool(nodes[PRIMARY]!, pools[PRIMARY]!);

      const prom = await prometheus();
      const labels = { database: 'default', node: PRIMARY, role: 'primary' };
      expect(sampleValue(prom, 'db_pool_connections', { ...labels, state: 'active' })).toBe(4);
      expect(sampleValue(prom, 'db_pool_connections', { ...labels, state: 'idle' })).toBe(0);
      expect(sampleValue(prom, 'db_pool_connections', { ...labels, state: 'pending' })).toBe(2);
      expect(sampleValue(prom, 'db_pool_max', labels)).toBe(4);
      expect(sampleValue(prom, 'db_pool_min', labels)).toBe(2);
    } finally {
      for (const c of held.splice(0)) c.release();
      await Promise.allSettled(waiters);
    }
    await Promise.all(waiters);
    await waitFor('primary idle again', () => pools[PRIMARY]!.waitingCount === 0 && pools[PRIMARY]!.idleCount === pools[PRIMARY]!.totalCount);
    const after = (await json()).databases.default!.nodes;
    expect(after[PRIMARY]).toMatchObject({ inUse: 0, waiting: 0 });
    expectMatchesPool(after[PRIMARY]!, pools[PRIMARY]!);
  });

  it('serves valid Prometheus text with every documented metric and label', async () => {
    const prom = await prometheus();
    const expected: Record<string, string> = {
      db_pool_connections: 'gauge',
      db_pool_max: 'gauge',
      db_pool_min: 'gauge',
      db_pool_breaker_open: 'gauge',
      db_replica_banned: 'gauge',
      db_replica_lag_seconds: 'gauge',
      db_replica_lag_bytes: 'gauge',
      db_pool_acquire_seconds: 'histogram',
      db_pool_usage_seconds: 'histogram',
      db_pool_connection_creation_seconds: 'histogram',
      db_query_duration_seconds: 'histogram',
      db_pool_acquire_timeouts_total: 'counter',
      db_pool_errors_total: 'counter',
      db_pool_leaks_total: 'counter',
      db_routing_total: 'counter',
      db_routing_ryw_unverified_total: 'counter',
      db_pool_evictions_total: 'counter',
      db_pool_slow_queries_total: 'counter',
      db_pool_breaker_opens_total: 'counter',
      db_replica_bans_total: 'counter',
    };
    for (const [name, type] of Object.entries(expected)) {
      expect({ name, type: prom.get(name)?.type, help: (prom.get(name)?.help.length ?? 0) > 10 }).toEqual({ name, type, help: true });
    }
    for (const family of prom.values()) {
      for (const s of family.samples) {
        expect(s.labels.database).toBe('default');
        expect([PRIMARY, ...REPLICAS]).toContain(s.labels.node);
        expect(s.labels.role).toBe(s.labels.node === PRIMARY ? 'primary' : 'replica');
      }
    }
    for (const r of REPLICAS) {
      expect(sampleValue(prom, 'db_replica_lag_seconds', { node: r })).toBeGreaterThanOrEqual(0);
      expect(sampleValue(prom, 'db_replica_banned', { node: r })).toBe(0);
    }
    expect(prom.get('db_replica_lag_seconds')!.samples.some((s) => s.labels.node === PRIMARY)).toBe(false);
    expect(sampleValue(prom, 'db_pool_connection_creation_seconds_count', { node: PRIMARY })).toBeGreaterThanOrEqual(2);
    expect(prom.get('db_pool_errors_total')!.samples.filter((s) => s.labels.node === PRIMARY).map((s) => s.labels.kind).sort()).toEqual(
      ['acquire-timeout', 'connection', 'idle-client', 'query', 'server-full', 'validation'],
    );
  });

  it('moves counters with traffic: routed reads land on the replica labels, writes on the primary', async () => {
    const before = await prometheus();
    const beforeJson = (await json()).databases.default!.nodes;
    const server = request(app.getHttpServer());
    const ports: number[] = [];
    for (let i = 0; i < 12; i++) ports.push((await server.get('/items/read').expect(200)).body.port);
    for (let i = 0; i < 5; i++) {
      const res = await server.post('/items/write').expect(201);
      expect(res.body).toEqual({ port: clusterConfig.ports.primary, replica: false });
    }
    const after = await prometheus();
    const afterJson = (await json()).databases.default!.nodes;

    const served = { [REPLICAS[0]!]: ports.filter((p) => p === clusterConfig.ports.replica1).length, [REPLICAS[1]!]: ports.filter((p) => p === clusterConfig.ports.replica2).length };
    expect(served[REPLICAS[0]!]! + served[REPLICAS[1]!]!).toBe(12);
    expect(served[REPLICAS[0]!]).toBeGreaterThan(0);
    expect(served[REPLICAS[1]!]).toBeGreaterThan(0);

    const delta = (name: string, labels: Record<string, string>) => sampleValue(after, name, labels) - sampleValue(before, name, labels);
    for (const r of REPLICAS) {
      expect(delta('db_routing_total', { node: r, reason: 'read' })).toBe(served[r]);
      expect(delta('db_routing_total', { node: r, reason: 'write' })).toBe(0);
      expect(delta('db_query_duration_seconds_count', { node: r })).toBeGreaterThanOrEqual(served[r]!);
      expect(afterJson[r]!.counters.routedReads - beforeJson[r]!.counters.routedReads).toBe(served[r]);
    }
    expect(delta('db_routing_total', { node: PRIMARY, reason: 'write' })).toBe(5);
    expect(delta('db_routing_total', { node: PRIMARY, reason: 'read' })).toBe(0);
    expect(delta('db_routing_total', { node: PRIMARY, reason: 'fallback' })).toBe(0);
    expect(delta('db_pool_acquire_seconds_count', { node: PRIMARY })).toBeGreaterThanOrEqual(5);
    expect(afterJson[PRIMARY]!.counters.routedWrites - beforeJson[PRIMARY]!.counters.routedWrites).toBe(5);
    expect(afterJson[PRIMARY]!.acquireMs.count).toBeGreaterThan(beforeJson[PRIMARY]!.acquireMs.count);
  });

  it('never shows the password or query parameter values', async () => {
    await db.query('SELECT $1::text AS secret_param', ['param-value-do-not-show']);
    const server = request(app.getHttpServer());
    const bodies = [(await server.get('/metrics')).text, (await server.get('/metrics/db-pool')).text, (await server.get('/metrics/db-pool/dashboard')).text];
    for (const body of bodies) {
      expect(body).not.toContain(clusterConfig.password);
      expect(body).not.toContain('param-value-do-not-show');
    }
  });
});
