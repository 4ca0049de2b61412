import { LatencyHistogram } from '../pool/node-stats.js';
import { LoadWindow, type LoadSource } from './load.window.js';

// A fake pool driven by the test's clock: each step records `rate` acquisitions per second, each
// waited `waitMs` and held `usageMs`, as NodePool records them.

function source(): LoadSource & { inUse: number; waiting: number; step(rate: number, waitMs: number, usageMs: number, ms: number): void } {
  const s = {
    counters: { acquired: 0 },
    acquireTime: new LatencyHistogram(),
    usageTime: new LatencyHistogram(),
    inUse: 0,
    waiting: 0,
    step(rate: number, waitMs: number, usageMs: number, ms: number) {
      const n = Math.round((rate * ms) / 1000);
      for (let i = 0; i < n; i++) {
        s.counters.acquired++;
        s.acquireTime.record(waitMs);
        s.usageTime.record(usageMs);
      }
    },
  };
  return s;
}

describe('LoadWindow', () => {
  it("applies Little's law to the busiest slot: arrival rate × (mean hold + mean wait)", () => {
    const src = source();
    const w = new LoadWindow(10_000, 5);
    w.sample(src, 0);
    // 2 s of light load (10/s, held 20 ms), then 2 s of 40/s held 50 ms after waiting 150 ms.
    for (let t = 1000; t <= 2000; t += 1000) {
      src.step(10, 0.1, 20, 1000);
      w.sample(src, t);
    }
    for (let t = 3000; t <= 4000; t += 1000) {
      src.step(40, 150, 50, 1000);
      src.inUse = 2;
      src.waiting = 6;
      w.sample(src, t);
    }
    const s = w.summary(4000);
    expect(s.busiest).toEqual({ at: 2000, spanMs: 2000, arrivalPerSec: 40, meanUsageMs: 50, meanAcquireMs: 150, load: 8 });
    expect(s.coveredMs).toBe(4000);
    expect(s.samples).toBe(4);
    expect(s.arrivalPerSec).toBe(25); // (20 + 80) acquisitions over 4 s
    expect(s.peakInUse).toBe(2);
    expect(s.peakWaiting).toBe(6);
    expect(s.waitingShare).toBe(0.5);
    // 20 waits of 0.1 ms and 80 of 150 ms: p50 and p95 fall in the 250 ms bucket.
    expect(s.acquireMs).toEqual({ count: 100, mean: 120.02, p50: 250, p95: 250, p99: 250 });
    expect(s.usageMs).toEqual({ count: 100, mean: 44, p95: 50 });
  });

  it('forgets what is older than the window, slot by slot', () => {
    const src = source();
    const w = new LoadWindow(4000, 4);
    w.sample(src, 0);
    src.step(100, 3, 30, 1000);
    src.inUse = 5;
    src.waiting = 1;
    w.sample(src, 1000);
    src.inUse = 0;
    src.waiting = 0;
    for (let t = 2000; t <= 4000; t += 1000) w.sample(src, t);
    expect(w.summary(4000).busiest?.load).toBe(3.3);
    expect(w.summary(4000).peakInUse).toBe(5);
    // At 5 s the window is (1 s, 5 s]: the slot (0, 1 s] that held the burst is out.
    w.sample(src, 5000);
    const later = w.summary(5000);
    expect(later.busiest?.load).toBe(0);
    expect(later.peakInUse).toBe(0);
    expect(later.acquireMs.count).toBe(0);
    expect(later.coveredMs).toBe(4000);
    // Even without a sample, a summary much later sees an empty window.
    expect(w.summary(60_000)).toMatchObject({ coveredMs: 0, samples: 0, busiest: null, arrivalPerSec: 0 });
  });

  it('keeps the peak in use seen at an acquire between two samples', () => {
    const src = source();
    const w = new LoadWindow(10_000, 10);
    w.sample(src, 0);
    w.noteInUse(7);
    w.noteInUse(3);
    w.sample(src, 1000);
    expect(w.summary(1000).peakInUse).toBe(7);
    w.sample(src, 2000);
    expect(w.summary(2000).peakInUse).toBe(7);
  });

  it('ignores a sample that does not move the clock forward, and takes a baseline first', () => {
    const src = source();
    src.step(50, 1, 1, 1000);
    const w = new LoadWindow(10_000, 10);
    w.sample(src, 5000); // baseline: what happened before the window started is not counted
    w.sample(src, 5000);
    w.sample(src, 4000);
    expect(w.summary(5000).samples).toBe(0);
    src.step(10, 1, 1, 1000);
    w.sample(src, 6000);
    expect(w.summary(6000)).toMatchObject({ samples: 1, coveredMs: 1000, arrivalPerSec: 10 });
  });
});
