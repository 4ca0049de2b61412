import type { PoolModuleRootOptions } from 'nestjs-pg-pools';
import { startApp, startAppBehindRelay, type TestApp } from '../support/app.js';
import { adminQuery, nodeOptions } from '../support/cluster.js';
import { expectNoSessionsLeft, poolSessions, terminateSessions } from '../support/sessions.js';
import { sleep, waitFor, within } from '../support/wait.js';

// Validation on borrow: connections the server killed while they sat in the pool are never handed
// to a caller — whether the server said so (pg_terminate_backend → 57P01 while idle) or the peer
// went silent (a connection idle longer than validateIdleAfterMs is checked, bounded, first).

const APP = 'e2e-hygiene-validation';

/** The suite's pool options: the test preset, this file's application name, and `extra`. */
const options = (extra: Partial<PoolModuleRootOptions>): PoolModuleRootOptions => ({ preset: 'test', applicationName: APP, ...extra });

async function backendPid(t: TestApp): Promise<number> {
  return (await t.db.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
}

describe('validation on borrow (real primary)', () => {
  afterAll(() => expectNoSessionsLeft(APP));

  it('never hands out connections terminated server-side while idle, and refills the pool to min', async () => {
    const t = await startApp({ preset: 'test', applicationName: APP, primary: nodeOptions('primary'), min: 3, max: 4 });
    try {
      const before = (await poolSessions('primary', APP)).map((s) => s.pid).sort();
      expect(before).toHaveLength(3);
      // The first 57P01 makes the pool close its other idle connections itself, so the server may
      // find only one of them still there to terminate.
      expect(await terminateSessions('primary', APP)).toBeGreaterThanOrEqual(1);
      await waitFor('old sessions gone', async () => (await poolSessions('primary', APP)).every((r) => !before.includes(r.pid)), 3000);
      const pids = new Set<number>();
      for (let i = 0; i < 10; i++) pids.add(await backendPid(t));
      for (const pid of pids) expect(before).not.toContain(pid);
      const after = await waitFor('pool back to min with new server sessions', async () => {
        const rows = await poolSessions('primary', APP);
        return rows.length === 3 && t.db.primary.pool.totalCount === 3 && rows.every((r) => !before.includes(r.pid)) ? rows : undefined;
      }, 5000);
      expect(after).toHaveLength(3);
      expect(t.cluster.primary.counters.idleErrors).toBeGreaterThanOrEqual(1);
      expect(t.cluster.primary.counters.queryErrors).toBe(0);
      expect(t.events.filter((e) => e.type === 'error' && e.kind === 'idle-client').length).toBeGreaterThanOrEqual(1);
    } finally {
      await t.close();
    }
  }, 20_000);

  it('checks a connection idle longer than validateIdleAfterMs and replaces a silent one before the caller sees it', async () => {
    const { t, relay } = await startAppBehindRelay(options({
      min: 1,
      max: 2,
      acquireTimeoutMs: 1500,
      validateIdleAfterMs: 500,
      // The validation bound on its own: the node monitor would find the stalled relay hung first.
      monitor: { enabled: false },
    }));
    try {
      const first = await backendPid(t);
      await sleep(700);
      relay.stall();
      const started = Date.now();
      const second = await within('query after a silent connection', 5000, backendPid(t));
      const elapsed = Date.now() - started;
      expect(second).not.toBe(first);
      expect(elapsed).toBeGreaterThanOrEqual(700);
      expect(elapsed).toBeLessThan(4000);
      expect(t.cluster.primary.counters.validationFailures).toBe(1);
      expect(t.cluster.primary.counters.queryErrors).toBe(0);
      const validation = t.events.find((e) => e.type === 'error' && e.kind === 'validation');
      expect(validation).toMatchObject({ node: 'primary', role: 'primary' });
      await adminQuery('primary', 'SELECT pg_terminate_backend($1)', [first]);
    } finally {
      await t.close();
    }
  }, 20_000);

  it('runs a single statement once more on a new connection when the pooled session was terminated just before it ran', async () => {
    await adminQuery('primary', 'CREATE TABLE IF NOT EXISTS hygiene_stale_retry (id serial PRIMARY KEY, tag text)', [], { as: 'app' });
    await adminQuery('primary', 'DELETE FROM hygiene_stale_retry', [], { as: 'app' });
    const { t, relay } = await startAppBehindRelay(options({ min: 1, max: 2, validateIdleAfterMs: 60_000 }));
    try {
      // The race of a busy pool, made deterministic: the server terminates the pooled session
      // (and sends its FATAL) while the relay holds the bytes; the pool hands the connection out
      // and sends an INSERT the server never reads; then the FATAL arrives as the INSERT's answer.
      const pid = await backendPid(t);
      relay.stall();
      await adminQuery('primary', 'SELECT pg_terminate_backend($1)', [pid]);
      const insert = t.db.query<{ id: number }>('INSERT INTO hygiene_stale_retry (tag) VALUES ($1) RETURNING id', ['once']);
      await sleep(100);
      relay.releaseReplies();
      const res = await within('the retried INSERT', 5000, insert);
      expect(res.rows).toHaveLength(1);
      expect((await adminQuery<{ n: string }>('primary', "SELECT count(*) AS n FROM hygiene_stale_retry WHERE tag = 'once'"))[0]!.n).toBe('1');
      expect(t.cluster.primary.counters.staleRetries).toBe(1);

      // A statement that had been running for a while when its session was terminated is not run again.
      const slow = t.db.query('SELECT pg_sleep(3)').then(() => undefined, (e: unknown) => e);
      await waitFor('pg_sleep running', async () => (await poolSessions('primary', APP)).some((s) => s.state === 'active'), 3000);
      await sleep(1100);
      await adminQuery('primary', "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND state = 'active'", [APP]);
      expect(await slow).toMatchObject({ code: '57P01' });
      expect(t.cluster.primary.counters.staleRetries).toBe(1);
    } finally {
      await t.close();
    }
  }, 20_000);

  it('validates on every borrow with validateIdleAfterMs: 0', async () => {
    const { t, relay } = await startAppBehindRelay(options({ min: 1, max: 1, acquireTimeoutMs: 800, validateIdleAfterMs: 0 }));
    try {
      const first = await backendPid(t);
      relay.stall();
      const second = await within('query right after the peer went silent', 5000, backendPid(t));
      expect(second).not.toBe(first);
      expect(t.cluster.primary.counters.validationFailures).toBe(1);
      await adminQuery('primary', 'SELECT pg_terminate_backend($1)', [first]);
    } finally {
      await t.close();
    }
  }, 20_000);
});
