import type { Pool, PoolClient } from 'pg';
import request from 'supertest';
import { DatabaseService, type PoolEvent } from 'nestjs-pg-pools';
import { clusterConfig, nodeOptions } from '../support/cluster.js';
import { CapturingLogger } from '../support/logger.js';
import { parsePrometheusText, sampleValue } from '../support/observability.js';
import { waitForNoSessions } from '../support/sessions.js';
import { waitFor } from '../support/wait.js';
import { buildApp, type TestApp } from '../support/app.js';

// The event stream and alerts on the real primary: connect/acquire/release, a slow query
// (pg_sleep with a small slowQueryMs), a leak (a client held past leakDetectionThresholdMs), and
// the pool alerts (usage, waiting, exhausted) with their cooldown and Logger lines.

const APP = 'e2e-events-pool';
const PARAM = 'param-value-never-in-events';

describe('pool events and alerts (real primary)', () => {
  let t: TestApp;
  let db: DatabaseService;
  let pool: Pool;
  let events: PoolEvent[] = [];
  const logger = new CapturingLogger();
  const held: PoolClient[] = [];

  beforeAll(async () => {
    t = await buildApp(
      {
        preset: 'test',
        applicationName: APP,
        primary: nodeOptions('primary'),
        min: 1,
        max: 3,
        sizingAdvisor: false,
        slowQueryMs: 150,
        leakDetectionThresholdMs: 2000,
        alerts: { waitingThreshold: 0, intervalMs: 100, cooldownMs: 60_000 },
      },
      { logger },
    );
    ({ db, events } = t);
    pool = t.pool();
  }, 30_000);

  afterAll(async () => {
    for (const c of held.splice(0)) c.release();
    await t?.close();
    await waitForNoSessions(APP, { nodes: ['primary'], timeoutMs: 5000, everyMs: 100 });
    const everything = JSON.stringify(events) + JSON.stringify(logger.lines);
    expect(everything).not.toContain(clusterConfig.password);
    expect(everything).not.toContain(PARAM);
  }, 30_000);

  function ofType<T extends PoolEvent['type']>(type: T): Array<Extract<PoolEvent, { type: T }>> {
    return events.filter((e): e is Extract<PoolEvent, { type: T }> => e.type === type);
  }

  it('emits acquire and release with timings for every checkout, and connect for new connections', async () => {
    const start = events.length;
    await db.query('SELECT 1');
    await waitFor('release event', () => events.slice(start).some((e) => e.type === 'release'));
    const mine = events.slice(start);
    const acquire = mine.find((e) => e.type === 'acquire');
    expect(acquire).toMatchObject({ database: 'default', node: 'primary', role: 'primary', waitMs: expect.any(Number) });
    expect((acquire as { waitMs: number }).waitMs).toBeGreaterThanOrEqual(0);
    expect(mine.find((e) => e.type === 'release')).toMatchObject({ node: 'primary', heldMs: expect.any(Number) });

    const clients = await Promise.all([pool.connect(), pool.connect()]);
    for (const c of clients) c.release();
    await db.withClient(async () => undefined);
    expect(ofType('connect').length).toBeGreaterThanOrEqual(1);
    expect(ofType('connect')[0]).toMatchObject({ node: 'primary', durationMs: expect.any(Number) });
  });

  it('emits slow-query with the SQL text but never the parameter values', async () => {
    const res = await db.query('SELECT pg_sleep(0.3), $1::text AS tag', [PARAM]);
    expect(res.rows[0].tag).toBe(PARAM);
    const slow = await waitFor('slow-query event', () => ofType('slow-query').at(-1));
    expect(slow).toMatchObject({ database: 'default', node: 'primary', role: 'primary', text: 'SELECT pg_sleep(0.3), $1::text AS tag' });
    expect(slow.durationMs).toBeGreaterThanOrEqual(290);
    expect(JSON.stringify(slow)).not.toContain(PARAM);

    await db.query('SELECT 1');
    expect(ofType('slow-query')).toHaveLength(1);
    const json = (await request(t.app.getHttpServer()).get('/metrics/db-pool').expect(200)).body;
    expect(json.databases.default.nodes.primary.counters.slowQueries).toBe(1);
  });

  it('emits leak (with the acquiring stack) for a client held past leakDetectionThresholdMs, and logs it', async () => {
    await db.withClient(async (client) => {
      await client.query('SELECT 1');
      await waitFor('leak event', () => ofType('leak').length === 1, 5000);
    });
    const leak = ofType('leak')[0]!;
    expect(leak).toMatchObject({ database: 'default', node: 'primary', heldMs: 2000 });
    expect(leak.stack).toContain('events-pool.e2e-spec.ts');
    expect(logger.lines.some((l) => l.level === 'warn' && l.context === 'PoolModule:default' && l.message.startsWith('Possible connection leak on "default/primary"'))).toBe(true);
    await waitFor('returned-leak log', () => logger.lines.some((l) => l.message.startsWith('Previously reported leaked client of "default/primary" was returned')));

    const prom = parsePrometheusText((await request(t.app.getHttpServer()).get('/metrics').expect(200)).text);
    expect(sampleValue(prom, 'db_pool_leaks_total', { node: 'primary' })).toBe(1);
  }, 15_000);

  it('fires the pool alerts when the pool is full and callers wait, once per cooldown, and logs them', async () => {
    expect(ofType('alert')).toEqual([]);
    const alertsBefore = 0;
    for (let i = 0; i < 3; i++) held.push(await pool.connect());
    const waiter = db.primary.query('SELECT 1');
    await waitFor('one caller waiting', () => pool.waitingCount === 1);
    const fired = await waitFor('three alerts', () => {
      const list = ofType('alert').slice(alertsBefore);
      return list.length >= 3 ? list : undefined;
    }, 3000);
    expect(fired.map((a) => a.alert).sort()).toEqual(['pool-exhausted', 'pool-usage-critical', 'pool-waiting']);
    const critical = fired.find((a) => a.alert === 'pool-usage-critical')!;
    expect(critical).toMatchObject({ database: 'default', node: 'primary', level: 'critical', value: 1, threshold: 0.9, state: { total: 3, idle: 0, inUse: 3, max: 3 } });
    expect(fired.find((a) => a.alert === 'pool-waiting')).toMatchObject({ level: 'warning', value: 1, threshold: 0 });
    expect(logger.lines.filter((l) => l.context === 'PoolModule:default' && l.message.includes('is 100% in use (critical above 90%'))).toHaveLength(1);
    expect(logger.lines.some((l) => l.level === 'error' && l.message === 'Pool "default/primary" has no idle connection while 1 callers wait (in use 3/3, idle 0, waiting 1).')).toBe(true);

    await new Promise((r) => setTimeout(r, 500));
    expect(ofType('alert').length - alertsBefore).toBe(3);

    for (const c of held.splice(0)) c.release();
    await waiter;
  });
});
