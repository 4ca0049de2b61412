import { PoolUnavailableError } from 'nestjs-pg-pools';
import { startApp } from '../support/app.js';
import { nodeOptions } from '../support/cluster.js';
import { sessionCounts } from '../support/sessions.js';
import { waitFor } from '../support/wait.js';
import { ServerFiller } from '../support/server-slots.js';

// A full server is not a dead node (docs/failover.md, "Failure handling"): an outside process takes every
// connection slot of the primary (max_connections, "sorry, too many clients already", 53300).
// Callers are served from the pool's open connections, the breaker stays closed, the error names
// the server's limit, it is counted, and the pool opens connections again as soon as slots free.
// Every outside connection is closed in a finally.

const APP = 'e2e-failure-server-full';

describe('(3) a full server (max_connections taken from outside)', () => {
  afterAll(async () => {
    await waitFor('no session left', async () => Object.values(await sessionCounts(APP)).every((n) => n === 0), 5000);
  }, 15_000);

  const filler = new ServerFiller();
  const fillServer = () => filler.fill();
  const freeServer = () => filler.free();

  afterEach(freeServer);

  it('serves callers from idle connections, names the limit, counts it, recovers at once', async () => {
    const t = await startApp({
      preset: 'test',
      applicationName: APP,
      primary: nodeOptions('primary', { min: 2, max: 6, validateIdleAfterMs: 0 }),
      breaker: { failureThreshold: 2, resetTimeoutMs: 10_000 },
    });
    const cold = await startApp({ preset: 'test', applicationName: APP, lazy: true, primary: nodeOptions('primary', { min: 0, max: 2 }) });
    try {
      await waitFor('2 idle connections', () => t.db.primary.pool.idleCount === 2, 3000);
      await fillServer();
      // A burst wider than the idle connections: the pool tries to open more and meets 53300.
      const burst = await Promise.allSettled(Array.from({ length: 6 }, () => t.db.query('SELECT pg_sleep(0.05)')));
      let served = burst.filter((r) => r.status === 'fulfilled').length;
      let failed = burst.length - served;
      const until = Date.now() + 1000;
      while (Date.now() < until) {
        const r = await t.db.query('SELECT 1').then(() => true, () => false);
        if (r) served++;
        else failed++;
      }
      expect({ failed, breaker: t.cluster.primary.status().breaker }).toEqual({ failed: 0, breaker: 'closed' });
      expect(served).toBeGreaterThan(20);
      expect(t.events.filter((e) => e.type === 'error' && e.kind === 'server-full').length).toBeGreaterThan(0);
      expect(t.cluster.primary.counters.serverFull).toBeGreaterThan(0);

      // A pool with no connection at all gets the server's limit named, at once.
      const coldStarted = Date.now();
      const full = await cold.db.query('SELECT 1').then(() => undefined, (e: unknown) => e);
      expect(Date.now() - coldStarted).toBeLessThan(1000);
      expect(full).toMatchObject({ name: 'PoolServerFullError', code: 'POOL_SERVER_FULL', database: 'default', node: 'primary' });
      expect(full).not.toBeInstanceOf(PoolUnavailableError);
      expect((full as Error).message).toMatch(/no connection slot left.*max_connections/);

      await freeServer();
      const freedAt = Date.now();
      // Three clients at once: one more than the idle ones, so a new connection must open.
      const held = await Promise.all([t.db.primary.pool.connect(), t.db.primary.pool.connect(), t.db.primary.pool.connect()]);
      held.forEach((c) => c.release());
      expect(Date.now() - freedAt).toBeLessThan(1000);
      await cold.db.query('SELECT 1');
    } finally {
      await freeServer();
      await cold.close();
      await t.close();
    }
  }, 30_000);
});
