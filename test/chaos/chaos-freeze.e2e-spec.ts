import { FREEZE_POOL, FREEZE_SCENARIOS, SHORT_TIMING } from '../chaos/chaos.driver.js';
import { chaosSuite, expectRecovered } from '../chaos/chaos.suite.js';
import { TIME_MARGIN_MS } from '../chaos/chaos.goals.js';

// Hung nodes, the short form of the freeze rows of `npm run chaos` (test/chaos/chaos.driver.ts):
// a server frozen with SIGSTOP keeps its sockets open and answers nothing (a partition, a stuck
// VM). (f) replica1 frozen under read load; (g) the primary frozen under mixed load with
// acquireTimeoutMs 2000. Every frozen process gets SIGCONT in a finally; the cluster is checked
// (and started if need be) before the file ends.

const APP = 'e2e-chaos-freeze';

describe('hung nodes (SIGSTOP, real cluster)', () => {
  const chaos = chaosSuite({ applicationName: APP, timing: SHORT_TIMING, scenarios: FREEZE_SCENARIOS, pool: FREEZE_POOL }, '(f) and (g)');
  const result = chaos.result;
  const run = () => chaos.run();

  it('never crashes, and every pool is back to its baseline with no leaked session after each freeze', () => {
    for (const r of run().results) {
      expectRecovered(r);
    }
  });


  it('(f) a frozen replica: 0 failed reads, out of rotation within 750 ms, reads keep at least half their rate, slowest read ≤ 2 s, back after SIGCONT', () => {
    const r = result('replica-freeze');
    const f = r.facts as Record<string, number>;
    expect(r.failedReads).toBe(0);
    // monitor.intervalMs + monitor.timeoutMs (250 + 500 ms), + TIME_MARGIN_MS on 2 shared cores.
    expect(f.outOfRotationMs).toBeLessThanOrEqual(750 + TIME_MARGIN_MS);
    expect(f.readsPerSecondDuring).toBeGreaterThanOrEqual(0.5 * f.readsPerSecondBefore);
    expect(f.slowestReadMs).toBeLessThanOrEqual(2000);
    expect(r.recoveryMs).toBeDefined();
  });

  it('(g) a frozen primary with acquireTimeoutMs 2000: every write answers within 2 s, replica reads go on, writes succeed within 1 s of SIGCONT', () => {
    const r = result('primary-freeze');
    const f = r.facts as Record<string, number>;
    expect(f.writesDuring).toBeGreaterThan(0);
    // acquireTimeoutMs (2000 ms), + TIME_MARGIN_MS on 2 shared cores.
    expect(f.slowestWriteMs).toBeLessThanOrEqual(2000 + TIME_MARGIN_MS);
    expect(f.readsOkDuring).toBeGreaterThan(10);
    expect(f.failedReadsDuring).toBe(0);
    expect(f.firstWriteOkAfterThawMs).toBeLessThanOrEqual(1000);
  });
});
