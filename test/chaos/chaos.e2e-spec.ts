import { CHAOS_POOL, SHORT_TIMING } from '../chaos/chaos.driver.js';
import { chaosSuite, expectRecovered } from '../chaos/chaos.suite.js';
import { TIME_MARGIN_MS } from '../chaos/chaos.goals.js';

// The short form of `npm run chaos` (test/chaos/chaos.driver.ts) against the real cluster, under a
// steady mixed load: (a) kill -9 a replica and restart it, (b) restart the primary, (c) terminate
// every pooled connection, (d) hold clients past the leak threshold, (e) exhaust the pool. It
// kills and restarts nodes of the shared cluster and always starts them again (and waits until
// both replicas stream) before it finishes.

const APP = 'e2e-chaos';

describe('chaos (short form, real cluster)', () => {
  // (b) checks writes that fail while the primary is down: without the hold (with failover.holdWritesMs,
  // the default, they wait for it instead and none fails; `npm run chaos` shows that row).
  const chaos = chaosSuite({ applicationName: APP, timing: SHORT_TIMING, pool: { holdWritesMs: 0 } }, '(a)–(e)');
  const result = chaos.result;
  const run = () => chaos.run();

  it('never crashes, and every pool is back to its baseline with no leaked client after every scenario', () => {
    expect(run().results.map((r) => r.scenario)).toEqual(['replica-kill', 'primary-restart', 'terminate-all', 'leak', 'exhaust']);
    for (const r of run().results) {
      expectRecovered(r);
      expect(r.reads).toBeGreaterThan(10);
      expect(r.writes).toBeGreaterThan(10);
    }
  });

  it('(a) kill -9 of a replica and its restart: 0 failed reads, and the replica serves reads again', () => {
    const r = result('replica-kill');
    expect(r.failedReads).toBe(0);
    expect(r.failedWrites).toBe(0);
    expect(r.recoveryMs).toBeDefined();
  });

  it('(b) primary restart: writes fail only while it is down and succeed again within 1 s of it accepting connections', () => {
    const r = result('primary-restart');
    const { stopAt, upAt, firstWriteOk, lastFailedWriteStart, writesOkAfterRecovery } = r.facts as Record<string, number>;
    expect(r.failedReads).toBe(0);
    expect(r.failedWrites).toBeGreaterThan(0);
    expect(firstWriteOk).toBeDefined();
    // The claim: within a second of the primary accepting again, + TIME_MARGIN_MS on 2 shared cores.
    expect(r.recoveryMs).toBeLessThanOrEqual(1000 + TIME_MARGIN_MS);
    for (const op of r.ops.filter((o) => o.kind === 'write' && !o.ok)) {
      expect(op.start).toBeGreaterThanOrEqual(stopAt - 100);
      expect(op.start).toBeLessThanOrEqual(upAt + 1000 + TIME_MARGIN_MS);
    }
    expect(lastFailedWriteStart).toBeLessThanOrEqual(firstWriteOk);
    expect(writesOkAfterRecovery).toBeGreaterThan(10);
  });

  it('(c) pg_terminate_backend of every pooled connection: 0 user-visible errors, every pool took them out and refilled to min with new sessions', () => {
    const r = result('terminate-all');
    expect(r.failedReads).toBe(0);
    expect(r.failedWrites).toBe(0);
    expect((r.facts.terminated as number[]).reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(3);
    expect(r.recoveryMs).toBeDefined();
    expect(r.facts.validated).toBe(true);
  });

  it('(d) clients held past the leak threshold: one leak event, warning (with the acquiring stack) and return log each', () => {
    const r = result('leak');
    expect(r.facts).toMatchObject({ held: 2, leaksWhileHeld: 2, leakEvents: 2, leakWarnings: 2, leakWarningHasStack: true, returnedLogs: 2 });
    expect(r.failedReads).toBe(0);
    expect(r.failedWrites).toBe(0);
  });

  it('(e) exhausted pool: every waiting caller gets PoolAcquireTimeoutError in bounded time, nothing hangs', () => {
    const r = result('exhaust');
    expect(r.facts.callers).toBe(8);
    expect(r.facts.timeouts).toBe(8);
    // After acquireTimeoutMs, + TIME_MARGIN_MS on 2 shared cores.
    expect(r.facts.slowestCallerMs).toBeLessThanOrEqual(CHAOS_POOL.acquireTimeoutMs + TIME_MARGIN_MS);
    const codes = r.facts.loadWriteFailureCodes as string[];
    for (const code of codes) expect(code).toBe('PoolAcquireTimeoutError');
    expect(r.failedReads).toBe(0);
    expect(r.recoveryMs).toBeDefined();
  });
});
