import { EventEmitter } from 'node:events';
import type { NodePool } from '../pool/node-pool.js';
import { LatencyHistogram } from '../pool/node-stats.js';
import type { PoolEvent } from '../pool.events.js';
import { SizingMonitor, adviseFromLoad, sizingOf, watchPoolLoad, type SizingHost } from './sizing.monitor.js';
import { resolveLoadSizingOptions } from './sizing.options.js';
import type { LoadSizingOptions } from '../pool.interfaces.js';

/** A steady load for one step of the fake clock. */
interface FakeStep {
  /** Acquisitions per second. */
  rate: number;
  /** How long each client is held. */
  usageMs: number;
  /** How long each caller waited for it. */
  waitMs: number;
  inUse: number;
  waiting: number;
}

/**
 * A stand-in for the part of `NodePool` the load sizing reads (counters, the two histograms, the
 * counts, `pool`'s acquire event), driven by a test's own clock. Test support only.
 */
class FakeLoadNode {
  readonly pool = new EventEmitter();
  readonly counters = { acquired: 0 };
  readonly acquireTime = new LatencyHistogram();
  readonly usageTime = new LatencyHistogram();
  inUse = 0;
  waiting = 0;
  ended = false;
  /** Breaker closed. */
  available = true;
  readonly config: { address: string; min: number; max: number };

  constructor(
    readonly name: string,
    max: number,
    min = 0,
    readonly role: 'primary' | 'replica' = 'primary',
  ) {
    this.config = { address: '127.0.0.1:5432', min, max };
  }

  get asNode(): NodePool {
    return this as unknown as NodePool;
  }

  /** Records `stepMs` worth of `step` (acquisitions spread over the step, as the pool would count them). */
  apply(step: FakeStep, stepMs: number): void {
    const n = Math.round((step.rate * stepMs) / 1000);
    for (let i = 0; i < n; i++) {
      this.counters.acquired++;
      this.acquireTime.record(step.waitMs);
      this.usageTime.record(step.usageMs);
    }
    this.inUse = step.inUse;
    this.waiting = step.waiting;
  }

  /** A burst between two samples: the pool emits `acquire` at `peak` checked out, then drops back. */
  burst(peak: number): void {
    const before = this.inUse;
    this.inUse = peak;
    this.pool.emit('acquire');
    this.inUse = before;
  }
}

function host(nodes: FakeLoadNode[], options: LoadSizingOptions = {}, emitting = true) {
  const events: PoolEvent[] = [];
  const warnings: string[] = [];
  const h: SizingHost & { closed: boolean } = {
    name: 'default',
    nodes: nodes.map((n) => n.asNode),
    closed: false,
    emitting,
    options: { loadSizing: resolveLoadSizingOptions({ windowMs: 10_000, buckets: 5, sampleIntervalMs: 1000, ...options }) },
    emit: (e) => events.push(e),
    logger: { warn: (m) => warnings.push(m) },
  };
  return { h, events, warnings };
}

/** Runs `step` from `from` to `to` (ms), sampling every second; returns what fired. */
function drive(monitor: SizingMonitor, node: FakeLoadNode, from: number, to: number, step: FakeStep): PoolEvent[] {
  const fired: PoolEvent[] = [];
  for (let t = from + 1000; t <= to; t += 1000) {
    node.apply(step, 1000);
    fired.push(...monitor.sample(t));
  }
  return fired;
}

// A closed loop of 8 callers on a pool of 2: each holds 50 ms and waits 150 ms, so 40/s get through.
const SATURATED: FakeStep = { rate: 40, usageMs: 50, waitMs: 150, inUse: 2, waiting: 6 };
const IDLE: FakeStep = { rate: 1, usageMs: 2, waitMs: 0.1, inUse: 0, waiting: 0 };

describe('SizingMonitor', () => {
  it('suggests max = ceil(λ × (W + Wq) × (1 + headroom)) for a saturated pool and warns once per cooldown', () => {
    const node = new FakeLoadNode('primary', 2);
    const { h, events, warnings } = host([node], { cooldownMs: 20_000 });
    const monitor = new SizingMonitor(h, new Map(), 0);
    const early = drive(monitor, node, 0, 4000, SATURATED);
    expect(early).toEqual([]); // under half a window: still warming up
    expect(monitor.sizing(node.asNode, 4000)?.advice).toBe('warming-up');
    const fired = drive(monitor, node, 4000, 5000, SATURATED);
    const s = monitor.sizing(node.asNode, 5000)!;
    expect(s.busiest).toMatchObject({ arrivalPerSec: 40, meanUsageMs: 50, meanAcquireMs: 150, load: 8 });
    expect(s.suggestedMax).toBe(Math.ceil(8 * 1.25));
    expect(s).toMatchObject({ advice: 'saturated', max: 2, peakInUse: 2, peakWaiting: 6, waitingShare: 1, limitedByBudget: false, budgetMax: null });
    expect(fired).toHaveLength(1);
    expect(fired[0]).toMatchObject({ type: 'sizing-advice', advice: 'saturated', node: 'primary', max: 2, suggestedMax: 10, load: 8, budgetMax: null });
    expect(events).toEqual(fired);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain('Pool "default/primary" is saturated: callers waited for a connection at 100% of the samples');
    expect(warnings[0]).toContain('40/s × (50ms held + 150ms waited) = 8 connections');
    expect(warnings[0]).toContain('Suggested max: 10.');
    // Still saturated: quiet until the cooldown has passed, then once more.
    expect(drive(monitor, node, 5000, 24_000, SATURATED)).toEqual([]);
    expect(drive(monitor, node, 24_000, 25_000, SATURATED)).toHaveLength(1);
    expect(warnings).toHaveLength(2);
    // It advises only: the pool's own settings are untouched.
    expect(node.config.max).toBe(2);
  });

  it("caps the suggestion at the start-up sizing advisor's per-pool budget and says so", () => {
    const node = new FakeLoadNode('primary', 2);
    const { h, warnings } = host([node]);
    const monitor = new SizingMonitor(h, new Map([['127.0.0.1:5432', 6]]), 0);
    const fired = drive(monitor, node, 0, 6000, SATURATED);
    expect(monitor.sizing(node.asNode, 6000)).toMatchObject({ suggestedMax: 6, budgetMax: 6, limitedByBudget: true, advice: 'saturated' });
    expect(fired[0]).toMatchObject({ suggestedMax: 6, budgetMax: 6 });
    expect(warnings[0]).toContain('Suggested max: 6 (capped at the max_connections budget of 6 per pool; put PgBouncer in front, or raise max_connections)');
  });

  it('calls a pool over-provisioned only after a whole window with a peak far below max and nobody waiting', () => {
    const node = new FakeLoadNode('replica-1', 20, 2, 'replica');
    const { h, events, warnings } = host([node]);
    const monitor = new SizingMonitor(h, new Map(), 0);
    expect(drive(monitor, node, 0, 7000, { ...IDLE, inUse: 1 })).toEqual([]);
    expect(monitor.sizing(node.asNode, 7000)?.advice).toBe('ok');
    node.burst(4); // between two samples: the acquire event keeps the peak
    const fired = drive(monitor, node, 7000, 8000, IDLE);
    const s = monitor.sizing(node.asNode, 8000)!;
    expect(s.peakInUse).toBe(4);
    // λ × (W + Wq) = 1/s × 2.1 ms ≈ 0: the suggestion is the larger of the peak and min.
    expect(s.suggestedMax).toBe(Math.max(s.peakInUse, node.config.min));
    expect(s.advice).toBe('over-provisioned');
    expect(fired).toHaveLength(1);
    expect(fired[0]).toMatchObject({ advice: 'over-provisioned', role: 'replica', max: 20, suggestedMax: 4, peakInUse: 4 });
    expect(events).toHaveLength(1);
    expect(warnings[0]).toContain('Pool "default/replica-1" looks over-provisioned: at most 4 of its 20 connections were in use in the last 8s and no caller waited');
  });

  it('is neither when the peak is above the share of max, or callers waited once', () => {
    const node = new FakeLoadNode('primary', 8);
    const { h } = host([node]);
    const monitor = new SizingMonitor(h, new Map(), 0);
    drive(monitor, node, 0, 10_000, { ...IDLE, inUse: 3 });
    expect(monitor.sizing(node.asNode, 10_000)?.advice).toBe('ok'); // 3 > floor(8 × 0.25)
    const other = new FakeLoadNode('primary', 8);
    const second = host([other]);
    const m2 = new SizingMonitor(second.h, new Map(), 0);
    drive(m2, other, 0, 9000, IDLE);
    drive(m2, other, 9000, 10_000, { ...IDLE, waiting: 1 });
    expect(m2.sizing(other.asNode, 10_000)).toMatchObject({ advice: 'ok', peakWaiting: 1, waitingShare: 0.1 });
  });

  it('does not call a banned replica, or a node with an open breaker, over-provisioned until a whole window after', () => {
    const replica = new FakeLoadNode('replica-1', 20, 0, 'replica');
    const primary = new FakeLoadNode('primary', 20);
    const ban = { node: replica.asNode, bannedUntil: 0 };
    const { h, events } = host([primary, replica]);
    const withBans: SizingHost = { ...h, replicas: [ban] };
    const monitor = new SizingMonitor(withBans, new Map(), 0);
    ban.bannedUntil = 30_000;
    primary.available = false;
    for (let t = 1000; t <= 12_000; t += 1000) monitor.sample(t);
    expect(monitor.sizing(replica.asNode, 12_000)?.advice).toBe('out-of-rotation');
    expect(monitor.sizing(primary.asNode, 12_000)?.advice).toBe('out-of-rotation');
    expect(events).toEqual([]);
    ban.bannedUntil = 0; // restored by a probe at 12 s
    primary.available = true;
    for (let t = 13_000; t <= 21_000; t += 1000) monitor.sample(t);
    expect(monitor.sizing(replica.asNode, 21_000)?.advice).toBe('out-of-rotation'); // last seen banned 9 s ago
    expect(events).toEqual([]);
    monitor.sample(22_000);
    expect(monitor.sizing(replica.asNode, 22_000)?.advice).toBe('over-provisioned');
    expect(events.map((e) => e.node).sort()).toEqual(['primary', 'replica-1']);
  });

  it('builds no warning when nobody listens and logging is off', () => {
    const node = new FakeLoadNode('primary', 2);
    const { h, events, warnings } = host([node], { log: false }, false);
    const monitor = new SizingMonitor(h, new Map(), 0);
    expect(drive(monitor, node, 0, 10_000, SATURATED)).toEqual([]);
    expect(events).toEqual([]);
    expect(warnings).toEqual([]);
    expect(monitor.sizing(node.asNode, 10_000)?.advice).toBe('saturated');
  });

  it('watches through the pool acquire event until stopped, and is off with enabled: false', () => {
    const node = new FakeLoadNode('primary', 2);
    const { h } = host([node]);
    const monitor = watchPoolLoad(h, [])!;
    expect(node.pool.listenerCount('acquire')).toBe(1);
    expect(sizingOf(node.asNode)).not.toBeNull();
    monitor.stop();
    expect(node.pool.listenerCount('acquire')).toBe(0);
    expect(sizingOf(node.asNode)).toBeNull();
    const off = new FakeLoadNode('primary', 2);
    expect(watchPoolLoad(host([off], { enabled: false }).h, [])).toBeUndefined();
    expect(off.pool.listenerCount('acquire')).toBe(0);
    expect(sizingOf(off.asNode)).toBeNull();
  });
});

describe('adviseFromLoad', () => {
  it('never suggests below the peak in use or min, and none before the first sample', () => {
    const options = resolveLoadSizingOptions({});
    const base = { windowMs: 60_000, coveredMs: 60_000, samples: 60, peakInUse: 0, peakWaiting: 0, waitingShare: 0, arrivalPerSec: 0,
      acquireMs: { count: 0, mean: 0, p50: 0, p95: 0, p99: 0 }, usageMs: { count: 0, mean: 0, p95: 0 }, busiest: null };
    expect(adviseFromLoad({ ...base, samples: 0, coveredMs: 0 }, { min: 0, max: 10 }, options, null, 10_000)).toMatchObject({ suggestedMax: null, advice: 'warming-up' });
    expect(adviseFromLoad(base, { min: 0, max: 10 }, options, null, 10_000)).toMatchObject({ suggestedMax: 1, advice: 'over-provisioned' });
    expect(adviseFromLoad(base, { min: 3, max: 10 }, options, null, 10_000).suggestedMax).toBe(3);
    expect(adviseFromLoad({ ...base, peakInUse: 2 }, { min: 0, max: 10 }, options, null, 10_000).suggestedMax).toBe(2);
    const busy = { ...base, busiest: { at: 0, spanMs: 10_000, arrivalPerSec: 200, meanUsageMs: 20, meanAcquireMs: 0, load: 4 } };
    expect(adviseFromLoad(busy, { min: 0, max: 10 }, options, null, 10_000)).toMatchObject({ suggestedMax: 5, advice: 'ok' });
    expect(adviseFromLoad(busy, { min: 0, max: 10 }, { ...options, headroom: 0 }, null, 10_000).suggestedMax).toBe(4);
  });
});
