import { PoolConfigurationError } from 'nestjs-pg-pools';
import { startApp, startupError, type TestApp } from '../support/app.js';
import { clusterConfig, nodeOptions } from '../support/cluster.js';
import { expectNoSessionsLeft } from '../support/sessions.js';
import { sleep, waitFor } from '../support/wait.js';

// Leak detection: a client held longer than leakDetectionThresholdMs logs a warning with the stack
// that acquired it, counts a leak and emits a `leak` event; it logs again when it finally returns.

const APP = 'e2e-hygiene-leak';

describe('leak detection (real primary)', () => {
  let t: TestApp;

  beforeAll(async () => {
    t = await startApp({ preset: 'test', applicationName: APP, primary: nodeOptions('primary'), min: 1, max: 3, leakDetectionThresholdMs: 2000 });
  }, 30_000);

  afterAll(async () => {
    await t?.close();
    await expectNoSessionsLeft(APP);
    expect(JSON.stringify(t.logger.lines) + JSON.stringify(t.events)).not.toContain(clusterConfig.password);
  }, 30_000);

  it('says nothing about a client returned before the threshold', async () => {
    await t.db.withClient(async (client) => {
      await client.query('SELECT 1');
      await sleep(300);
    });
    expect(t.cluster.primary.counters.leaks).toBe(0);
    expect(t.logger.warnings('leak')).toEqual([]);
  });

  it('warns with the acquiring stack for each client held too long, counts it, and logs again on return', async () => {
    const hold = async () => {
      await t.db.withClient(async (client) => {
        await client.query('SELECT 1');
        await waitFor('both leaks reported', () => t.cluster.primary.counters.leaks === 2, 5000);
      });
    };
    await Promise.all([hold(), hold()]);
    const warnings = t.logger.warnings('Possible connection leak on "default/primary"');
    expect(warnings).toHaveLength(2);
    for (const w of warnings) {
      expect(w).toMatch(/^Possible connection leak on "default\/primary": a client has been held for more than 2000ms\. Acquired at:\n/);
      expect(w).toContain('hygiene-leak.e2e-spec.ts');
    }
    const leaks = t.events.filter((e) => e.type === 'leak');
    expect(leaks).toHaveLength(2);
    expect(leaks[0]).toMatchObject({ database: 'default', node: 'primary', role: 'primary', heldMs: 2000 });
    const returned = await waitFor('returned log lines', () => {
      const lines = t.logger.warnings('Previously reported leaked client of "default/primary" was returned after');
      return lines.length === 2 ? lines : undefined;
    }, 2000);
    expect(returned[0]).toMatch(/returned after \d{4,}ms\.$/);
    expect(t.db.primary.pool.totalCount - t.db.primary.pool.idleCount).toBe(0);
  }, 15_000);

  it("does not watch the library's own checkouts: a db.query statement running past the threshold is no leak", async () => {
    const leaks = t.cluster.primary.counters.leaks;
    const warned = t.logger.warnings('Possible connection leak').length;
    const res = await t.db.query<{ port: number; recovery: boolean }>('SELECT pg_sleep(2.4), inet_server_port() AS port, pg_is_in_recovery() AS recovery');
    expect(res.rows[0]).toMatchObject({ port: clusterConfig.ports.primary, recovery: false });
    await sleep(300);
    expect(t.cluster.primary.counters.leaks).toBe(leaks);
    expect(t.logger.warnings('Possible connection leak')).toHaveLength(warned);
    expect(t.events.filter((e) => e.type === 'leak')).toHaveLength(leaks);
  }, 15_000);

  it('watches a transaction the caller holds, with the stack of the code that opened it', async () => {
    const leaks = t.cluster.primary.counters.leaks;
    const warned = t.logger.warnings('Possible connection leak').length;
    await t.db.transaction(async (tx) => {
      await tx.query('SELECT 1');
      await waitFor('the transaction reported', () => t.cluster.primary.counters.leaks === leaks + 1, 5000);
    });
    const warnings = t.logger.warnings('Possible connection leak').slice(warned);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain('hygiene-leak.e2e-spec.ts');
  }, 15_000);

  it('rejects a threshold below 2000 ms (other than 0) at startup', async () => {
    const err = await startupError({ applicationName: `${APP}-config`, primary: nodeOptions('primary'), leakDetectionThresholdMs: 500, lazy: true });
    expect(err).toBeInstanceOf(PoolConfigurationError);
    expect((err as Error).message).toBe('Invalid option `leakDetectionThresholdMs`: expected 0 (off) or an integer from 2000 and up, got 500 (number).');
  });
});
