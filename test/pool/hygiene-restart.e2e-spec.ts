import type { PoolModuleRootOptions } from 'nestjs-pg-pools';
import { startApp, startAppBehindRelay } from '../support/app.js';
import { adminQuery, nodeOptions } from '../support/cluster.js';
import { expectNoSessionsLeft, poolSessions } from '../support/sessions.js';
import { sleep, waitFor } from '../support/wait.js';
import { TIME_MARGIN_MS } from '../support/margin.js';

// Server restarts and failover, without stopping a shared node: a 57P01 on one pooled connection
// evicts every idle connection of that pool; 25006 from a primary that is in recovery (a demoted
// primary; here the "primary" option points at a replica) evicts every primary connection; and a
// pool that lost its server refills to min in the background — backing off while the server
// refuses, and as soon as it accepts again.

const APP = 'e2e-hygiene-restart';

/** The suite's pool options: the test preset, this file's application name, and `extra`. */
const options = (extra: Partial<PoolModuleRootOptions>): PoolModuleRootOptions => ({ preset: 'test', applicationName: APP, ...extra });

describe('DB restarts and failover (real servers)', () => {
  afterAll(() => expectNoSessionsLeft(APP));

  it('evicts every idle connection of the pool when one of them is terminated (57P01), then refills to min', async () => {
    const t = await startApp({ preset: 'test', applicationName: APP, primary: nodeOptions('primary'), min: 4, max: 6 });
    try {
      const before = (await poolSessions('primary', APP)).map((s) => s.pid);
      expect(before).toHaveLength(4);
      await adminQuery('primary', 'SELECT pg_terminate_backend($1)', [before[0]]);
      const after = await waitFor('four new sessions and none of the old ones', async () => {
        const rows = await poolSessions('primary', APP);
        return rows.length === 4 && rows.every((r) => !before.includes(r.pid)) ? rows : undefined;
      }, 5000);
      expect(after).toHaveLength(4);
      expect(t.events.filter((e) => e.type === 'remove' && e.reason === 'evicted')).toHaveLength(3);
      expect(t.cluster.primary.counters.refills).toBeGreaterThanOrEqual(4);
      expect(t.db.primary.pool.totalCount).toBe(4);
      expect((await t.db.query('SELECT 1 AS ok')).rows[0].ok).toBe(1);
    } finally {
      await t.close();
    }
  }, 20_000);

  it('evicts every connection of a primary that answers 25006 while in recovery (demoted), and not for a read-only transaction', async () => {
    // Nest's Logger is process-wide: the last application's logger receives every line, so the
    // healthy application starts only after the demoted one's log line is checked.
    const demoted = await startApp({ preset: 'test', applicationName: APP, primary: nodeOptions('replica1'), min: 3, max: 4 });
    let healthy: Awaited<ReturnType<typeof startApp>> | undefined;
    try {
      const before = (await poolSessions('replica1', APP)).map((s) => s.pid);
      expect(before).toHaveLength(3);
      await expect(demoted.db.query('CREATE TEMP TABLE demoted_check (id int)')).rejects.toMatchObject({ code: '25006' });
      const after = await waitFor('every old primary connection replaced', async () => {
        const rows = await poolSessions('replica1', APP);
        return rows.length === 3 && rows.every((r) => !before.includes(r.pid)) ? rows : undefined;
      }, 5000);
      expect(after).toHaveLength(3);
      expect(demoted.cluster.primary.counters.demotions).toBe(1);
      expect(demoted.logger.warnings('is in recovery (read-only): it was demoted')).toHaveLength(1);
      expect(demoted.events.some((e) => e.type === 'error' && e.kind === 'read-only')).toBe(true);

      healthy = await startApp({ preset: 'test', applicationName: `${APP}-ro`, primary: nodeOptions('primary'), min: 2, max: 2 });
      const pids = (await poolSessions('primary', `${APP}-ro`)).map((s) => s.pid).sort();
      await expect(
        healthy.db.transaction((tx) => tx.query('CREATE TEMP TABLE read_only_check (id int)'), { readOnly: true }),
      ).rejects.toMatchObject({ code: '25006' });
      await sleep(200);
      expect((await poolSessions('primary', `${APP}-ro`)).map((s) => s.pid).sort()).toEqual(pids);
      expect(healthy.cluster.primary.counters.demotions).toBe(0);
    } finally {
      await demoted.close();
      await healthy?.close();
    }
  }, 20_000);

  it('refills to min with backoff while the server refuses, then only by the breaker\'s trials, and refills once it accepts again', async () => {
    const { t, relay } = await startAppBehindRelay(options({ min: 3, max: 4, breaker: { failureThreshold: 2, resetTimeoutMs: 1000 } }));
    try {
      expect(t.db.primary.pool.totalCount).toBe(3);
      const rejectedAtStart = relay.rejected;
      relay.reject();
      await waitFor('pool emptied', () => t.db.primary.pool.totalCount === 0, 3000);
      // Two failed refill rounds (50 and ≤ 100 ms apart, each opening up to min = 3) open the
      // breaker with no caller involved; after that the refill only makes one trial per resetTimeoutMs.
      await waitFor('breaker opened by the refill', () => t.cluster.primary.status().breaker !== 'closed', 3000, 10);
      const openedAt = Date.now();
      await sleep(3000);
      const trials = relay.rejected - rejectedAtStart - 2 * 3;
      expect(trials).toBeGreaterThanOrEqual(1);
      expect(trials).toBeLessThanOrEqual(Math.ceil((Date.now() - openedAt) / 1000) + 1);

      await expect(t.db.query('SELECT 1')).rejects.toThrow();
      expect(t.cluster.primary.status().breaker).not.toBe('closed');

      await relay.restore();
      const restoredAt = Date.now();
      await waitFor('back to min without any request', () => t.db.primary.pool.idleCount === 3 && t.cluster.primary.status().breaker === 'closed', 3000, 10);
      // At the next trial: within resetTimeoutMs (1000 ms) + TIME_MARGIN_MS on 2 shared cores.
      expect(Date.now() - restoredAt).toBeLessThanOrEqual(1000 + TIME_MARGIN_MS);
      expect((await poolSessions('primary', APP)).length).toBe(3);
      expect((await t.db.query('SELECT 1 AS ok')).rows[0].ok).toBe(1);
    } finally {
      await t.close();
    }
  }, 30_000);
});
