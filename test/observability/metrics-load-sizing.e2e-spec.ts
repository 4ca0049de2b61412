import type { INestApplication } from '@nestjs/common';
import request from 'supertest';
import { DatabaseService, type PoolEvent } from 'nestjs-pg-pools';
import { adminQuery, clusterConfig, nodeOptions } from '../support/cluster.js';
import { parsePrometheusText, sampleValue } from '../support/observability.js';
import { waitForNoSessions } from '../support/sessions.js';
import { waitFor } from '../support/wait.js';
import { buildApp, type TestApp } from '../support/app.js';

// Sizing from observed load on the real cluster: a primary pool of max 2 under a closed loop of
// WORKERS callers (each runs `SELECT pg_sleep(HOLD_S)` again as soon as it returns) is saturated.
// Little's law says the callers in the system (holding or waiting) average WORKERS, so the load
// reported is close to WORKERS and the suggested max is far above 2. An idle replica pool of max
// 8 gets a suggestion below 8. Both warn once (log + event) and show in Prometheus.

const APP = 'e2e-load-sizing';
const PRIMARY_MAX = 2;
const REPLICA_MAX = 8;
const WORKERS = 8;
const HOLD_S = 0.02;
const LOAD_MS = 6000;
const WINDOW_MS = 10_000;
const BUCKETS = 5;
const HEADROOM = 0.25;

interface Sizing {
  windowMs: number;
  coveredMs: number;
  samples: number;
  min: number;
  max: number;
  peakInUse: number;
  peakWaiting: number;
  waitingShare: number;
  arrivalPerSec: number;
  acquireMs: { count: number; mean: number; p50: number; p95: number; p99: number };
  usageMs: { count: number; mean: number; p95: number };
  busiest: { arrivalPerSec: number; meanUsageMs: number; meanAcquireMs: number; load: number; spanMs: number } | null;
  headroom: number;
  suggestedMax: number | null;
  budgetMax: number | null;
  limitedByBudget: boolean;
  advice: string;
}

describe('sizing from observed load (real cluster)', () => {
  let t: TestApp;
  let app: INestApplication;
  let db: DatabaseService;

  beforeAll(async () => {
    t = await buildApp(
      {
        preset: 'test',
        applicationName: APP,
        primary: nodeOptions('primary', { min: 1, max: PRIMARY_MAX }),
        replicas: [nodeOptions('replica1', { min: 1, max: REPLICA_MAX })],
        acquireTimeoutMs: 5000,
        routing: { lagCheckIntervalMs: 60_000, maxReplicationLagMs: 0 },
        alerts: { enabled: false },
        loadSizing: { windowMs: WINDOW_MS, buckets: BUCKETS, sampleIntervalMs: 250, headroom: HEADROOM, cooldownMs: 60_000 },
      },
    );
    app = t.app;
    db = app.get(DatabaseService);
  }, 30_000);

  afterAll(async () => {
    await t?.close();
    await waitForNoSessions(APP, { timeoutMs: 5000, everyMs: 100 });
  }, 30_000);

  async function sizing(name: string): Promise<Sizing> {
    const res = await request(app.getHttpServer()).get('/metrics/db-pool').expect(200);
    return res.body.databases.default.nodes[name].sizing as Sizing;
  }

  async function prometheus() {
    const res = await request(app.getHttpServer()).get('/metrics').expect(200);
    return parsePrometheusText(res.text);
  }

  /** What the suggestion must be, from the figures the endpoint reports. */
  function expectedSuggestion(s: Sizing): number {
    const wanted = Math.max(1, s.min, s.peakInUse, Math.ceil(Number(((s.busiest?.load ?? 0) * (1 + s.headroom)).toFixed(6))));
    return s.budgetMax === null ? wanted : Math.min(wanted, s.budgetMax);
  }

  it('suggests a max above the configured one for a saturated pool, within the max_connections budget, and warns', async () => {
    const maxConnections = Number((await adminQuery<{ max_connections: string }>('primary', 'SHOW max_connections'))[0]!.max_connections);
    let completed = 0;
    const deadline = Date.now() + LOAD_MS;
    await Promise.all(
      Array.from({ length: WORKERS }, async () => {
        while (Date.now() < deadline) {
          await db.primary.query(`SELECT pg_sleep(${HOLD_S})`);
          completed++;
        }
      }),
    );
    // The next sample (every 250 ms) takes in the last queries of the loop.
    const s = await waitFor('a sample after the load', async () => {
      const current = await sizing('primary');
      return current.acquireMs.count >= completed ? current : undefined;
    }, 5000, 50);
    const families = await prometheus();
    const labels = { database: 'default', node: 'primary', role: 'primary' };

    expect(s.max).toBe(PRIMARY_MAX);
    expect(s.peakInUse).toBe(PRIMARY_MAX);
    expect(s.peakWaiting).toBeGreaterThanOrEqual(1);
    expect(s.peakWaiting).toBeLessThanOrEqual(WORKERS - PRIMARY_MAX);
    expect(s.waitingShare).toBeGreaterThanOrEqual(0.5);
    expect(s.advice).toBe('saturated');
    const b = s.busiest!;
    // Little's law on the pool: 2 connections always busy = arrival rate × mean hold.
    expect((b.arrivalPerSec * b.meanUsageMs) / 1000).toBeGreaterThan(PRIMARY_MAX * 0.7);
    expect((b.arrivalPerSec * b.meanUsageMs) / 1000).toBeLessThanOrEqual(PRIMARY_MAX * 1.05);
    expect(b.meanUsageMs).toBeGreaterThanOrEqual(HOLD_S * 1000);
    // ... and on pool + queue: the WORKERS callers are always holding or waiting.
    expect(b.load).toBeCloseTo((b.arrivalPerSec * (b.meanUsageMs + b.meanAcquireMs)) / 1000, 1);
    expect(b.load).toBeGreaterThan(WORKERS * 0.6);
    expect(b.load).toBeLessThanOrEqual(WORKERS * 1.05);
    // The budget is the start-up advisor's: 80% of max_connections shared by the pools on that server (this one).
    expect(s.budgetMax).toBe(Math.max(1, Math.floor(Math.floor(maxConnections * 0.8) / 1)));
    expect(s.suggestedMax).toBe(expectedSuggestion(s));
    expect(s.suggestedMax!).toBeGreaterThan(PRIMARY_MAX);
    expect(s.suggestedMax!).toBeGreaterThanOrEqual(Math.ceil(WORKERS * 0.6 * (1 + HEADROOM)));

    expect(sampleValue(families, 'db_pool_suggested_max', labels)).toBe(s.suggestedMax);
    expect(sampleValue(families, 'db_pool_suggested_max', labels)).toBeGreaterThan(sampleValue(families, 'db_pool_max', labels));
    expect(sampleValue(families, 'db_pool_window_peak_in_use', labels)).toBe(PRIMARY_MAX);
    expect(sampleValue(families, 'db_pool_offered_load', labels)).toBe(b.load);
    expect(sampleValue(families, 'db_pool_sizing_advice', { ...labels, advice: 'saturated' })).toBe(1);
    expect(sampleValue(families, 'db_pool_sizing_advice', { ...labels, advice: 'over-provisioned' })).toBe(0);

    const warned = t.events.filter((e) => e.type === 'sizing-advice' && e.node === 'primary');
    expect(warned).toHaveLength(1); // once per cooldown, however many samples saw it saturated
    expect(warned[0]).toMatchObject({ advice: 'saturated', max: PRIMARY_MAX, role: 'primary' });
    const event = warned[0] as Extract<PoolEvent, { type: 'sizing-advice' }>;
    expect(event.suggestedMax).toBeGreaterThan(PRIMARY_MAX);
    const lines = t.logger.warnings().filter((m) => m.startsWith('Pool "default/primary" is saturated'));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(`Suggested max: ${event.suggestedMax}`);
    expect(lines[0]).not.toContain(clusterConfig.password);
  }, 30_000);

  it('suggests a max below the configured one for an idle, over-provisioned pool', async () => {
    // Over-provisioned needs a whole window of evidence: at most WINDOW_MS after start.
    const s = await waitFor('the replica to be called over-provisioned', async () => {
      const current = await sizing('replica-1');
      return current.advice === 'over-provisioned' ? current : undefined;
    }, WINDOW_MS + 5000, 250);
    expect(s.max).toBe(REPLICA_MAX);
    expect(s.peakWaiting).toBe(0);
    expect(s.peakInUse).toBeLessThanOrEqual(Math.floor(REPLICA_MAX * 0.25));
    expect(s.coveredMs).toBeGreaterThanOrEqual(WINDOW_MS - WINDOW_MS / BUCKETS);
    expect(s.suggestedMax).toBe(expectedSuggestion(s));
    expect(s.suggestedMax!).toBeLessThan(REPLICA_MAX);

    const families = await prometheus();
    const labels = { database: 'default', node: 'replica-1', role: 'replica' };
    expect(sampleValue(families, 'db_pool_suggested_max', labels)).toBeLessThan(sampleValue(families, 'db_pool_max', labels));
    expect(sampleValue(families, 'db_pool_sizing_advice', { ...labels, advice: 'over-provisioned' })).toBe(1);

    const warned = await waitFor('the over-provisioned event', () =>
      t.events.find((e) => e.type === 'sizing-advice' && e.node === 'replica-1' && e.advice === 'over-provisioned'),
    );
    expect(warned).toMatchObject({ max: REPLICA_MAX, role: 'replica' });
    expect(t.logger.warnings().some((m) => m.startsWith(`Pool "default/replica-1" looks over-provisioned: at most ${s.peakInUse} of its ${REPLICA_MAX} connections`))).toBe(true);
    // It advises only: the pool kept its size.
    const body = (await request(app.getHttpServer()).get('/metrics/db-pool').expect(200)).body;
    expect(body.databases.default.nodes['replica-1'].max).toBe(REPLICA_MAX);
    expect(body.databases.default.nodes.primary.max).toBe(PRIMARY_MAX);
  }, 30_000);
});
