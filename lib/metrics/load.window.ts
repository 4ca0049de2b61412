import { LATENCY_BUCKETS_MS, type LatencyHistogram } from '../pool/node-stats.js';

/** What the window reads from a pool at each sample: the cumulative numbers `NodePool` keeps anyway. */
export interface LoadSource {
  readonly counters: { readonly acquired: number };
  readonly acquireTime: LatencyHistogram;
  readonly usageTime: LatencyHistogram;
  readonly inUse: number;
  readonly waiting: number;
}

const BUCKETS = LATENCY_BUCKETS_MS.length;

/** One time slot of the window; reused in place when the ring comes round (no allocation per sample). */
class Slot {
  id = -1;
  spanMs = 0;
  samples = 0;
  waitingSamples = 0;
  peakInUse = 0;
  peakWaiting = 0;
  acquired = 0;
  waitCount = 0;
  waitSumMs = 0;
  usageCount = 0;
  usageSumMs = 0;
  readonly waitCounts = new Array<number>(BUCKETS).fill(0);
  readonly usageCounts = new Array<number>(BUCKETS).fill(0);

  reset(id: number): void {
    this.id = id;
    this.spanMs = 0;
    this.samples = 0;
    this.waitingSamples = 0;
    this.peakInUse = 0;
    this.peakWaiting = 0;
    this.acquired = 0;
    this.waitCount = 0;
    this.waitSumMs = 0;
    this.usageCount = 0;
    this.usageSumMs = 0;
    this.waitCounts.fill(0);
    this.usageCounts.fill(0);
  }
}

/** Little's law over the busiest slot of the window. */
export interface BusiestSlot {
  /** Start of the slot (`Date.now()` scale). */
  at: number;
  spanMs: number;
  /** Acquisitions per second in that slot (λ). */
  arrivalPerSec: number;
  /** Mean time a connection was held (W). */
  meanUsageMs: number;
  /** Mean time a caller waited for one (Wq). */
  meanAcquireMs: number;
  /** λ × (W + Wq): connections busy plus callers waiting, on average. */
  load: number;
}

/** The rolling view of one pool over the last `windowMs`. */
export interface LoadSummary {
  windowMs: number;
  /** Time the slots in the window actually cover (less than `windowMs` right after start). */
  coveredMs: number;
  samples: number;
  /** Largest checked-out count seen (at every acquire, and at every sample). */
  peakInUse: number;
  /** Largest number of waiting callers seen at a sample. */
  peakWaiting: number;
  /** Share of the samples at which callers were waiting. */
  waitingShare: number;
  /** Acquisitions per second over the whole window. */
  arrivalPerSec: number;
  /** Acquire wait over the window, at bucket resolution. */
  acquireMs: { count: number; mean: number; p50: number; p95: number; p99: number };
  /** Hold time over the window, at bucket resolution. */
  usageMs: { count: number; mean: number; p95: number };
  /** The slot with the highest load; `null` before the first full sample. */
  busiest: BusiestSlot | null;
}

function round(value: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/** Upper bound of the bucket that holds percentile `p` of `counts` (`overflowMs` for the last, open bucket). */
export function bucketPercentile(counts: readonly number[], total: number, p: number, overflowMs: number): number {
  if (total === 0) return 0;
  const rank = Math.ceil((p / 100) * total);
  let seen = 0;
  for (let i = 0; i < counts.length; i++) {
    seen += counts[i]!;
    if (seen >= rank) return i === counts.length - 1 ? overflowMs : LATENCY_BUCKETS_MS[i]!;
  }
  return overflowMs;
}

/**
 * A ring of `buckets` fixed time slots covering the last `windowMs`. Each `sample()` adds what
 * changed in the pool's cumulative counters and histograms since the previous sample to the
 * current slot: O(histogram buckets) per sample, nothing per query. `noteInUse()` (called on
 * every acquire) only compares one number. The clock is passed in, so tests drive it.
 */
export class LoadWindow {
  readonly #slots: Slot[];
  readonly slotMs: number;
  #lastAt: number | undefined;
  #lastAcquired = 0;
  #lastWaitCount = 0;
  #lastWaitSum = 0;
  #lastUsageCount = 0;
  #lastUsageSum = 0;
  readonly #lastWaitCounts = new Array<number>(BUCKETS).fill(0);
  readonly #lastUsageCounts = new Array<number>(BUCKETS).fill(0);
  #peakSinceSample = 0;
  readonly #waitMerged = new Array<number>(BUCKETS).fill(0);
  readonly #usageMerged = new Array<number>(BUCKETS).fill(0);

  constructor(
    readonly windowMs: number,
    readonly buckets: number,
  ) {
    this.slotMs = Math.floor(windowMs / buckets);
    this.#slots = Array.from({ length: buckets }, () => new Slot());
  }

  /** Called on every acquire with the checked-out count: keeps the peak between two samples. */
  noteInUse(inUse: number): void {
    if (inUse > this.#peakSinceSample) this.#peakSinceSample = inUse;
  }

  /** Adds what happened since the previous sample to the slot of `now`. The first call only takes the baseline. */
  sample(source: LoadSource, now: number): void {
    const acquire = source.acquireTime;
    const usage = source.usageTime;
    const inUse = source.inUse;
    const waiting = source.waiting;
    if (this.#lastAt === undefined || now <= this.#lastAt) {
      if (this.#lastAt === undefined) this.#takeBaseline(source, now);
      return;
    }
    const id = this.#slotOf(now);
    const slot = this.#slots[id % this.buckets]!;
    if (slot.id !== id) slot.reset(id);
    slot.spanMs += now - this.#lastAt;
    slot.samples++;
    if (waiting > 0) slot.waitingSamples++;
    const peak = Math.max(inUse, this.#peakSinceSample);
    if (peak > slot.peakInUse) slot.peakInUse = peak;
    if (waiting > slot.peakWaiting) slot.peakWaiting = waiting;
    slot.acquired += source.counters.acquired - this.#lastAcquired;
    slot.waitCount += acquire.count - this.#lastWaitCount;
    slot.waitSumMs += acquire.sumMs - this.#lastWaitSum;
    slot.usageCount += usage.count - this.#lastUsageCount;
    slot.usageSumMs += usage.sumMs - this.#lastUsageSum;
    for (let i = 0; i < BUCKETS; i++) {
      slot.waitCounts[i]! += acquire.counts[i]! - this.#lastWaitCounts[i]!;
      slot.usageCounts[i]! += usage.counts[i]! - this.#lastUsageCounts[i]!;
    }
    this.#takeBaseline(source, now);
  }

  #takeBaseline(source: LoadSource, now: number): void {
    const acquire = source.acquireTime;
    const usage = source.usageTime;
    this.#lastAt = now;
    this.#lastAcquired = source.counters.acquired;
    this.#lastWaitCount = acquire.count;
    this.#lastWaitSum = acquire.sumMs;
    this.#lastUsageCount = usage.count;
    this.#lastUsageSum = usage.sumMs;
    for (let i = 0; i < BUCKETS; i++) {
      this.#lastWaitCounts[i] = acquire.counts[i]!;
      this.#lastUsageCounts[i] = usage.counts[i]!;
    }
    this.#peakSinceSample = 0;
  }

  /** The slot holding the interval that ends at `at` (a sample covers the time since the previous one). */
  #slotOf(at: number): number {
    return Math.floor((at - 1) / this.slotMs);
  }

  /** The window as of `now`: the slots of the last `buckets` slot periods. */
  summary(now: number, overflowMs = LATENCY_BUCKETS_MS[BUCKETS - 2]!): LoadSummary {
    const current = this.#slotOf(now);
    const waitMerged = this.#waitMerged.fill(0);
    const usageMerged = this.#usageMerged.fill(0);
    let covered = 0;
    let samples = 0;
    let waitingSamples = 0;
    let peakInUse = 0;
    let peakWaiting = 0;
    let acquired = 0;
    let waitCount = 0;
    let waitSum = 0;
    let usageCount = 0;
    let usageSum = 0;
    let busiest: BusiestSlot | null = null;
    for (const slot of this.#slots) {
      if (slot.id < 0 || slot.id > current || slot.id <= current - this.buckets || slot.spanMs === 0) continue;
      covered += slot.spanMs;
      samples += slot.samples;
      waitingSamples += slot.waitingSamples;
      peakInUse = Math.max(peakInUse, slot.peakInUse);
      peakWaiting = Math.max(peakWaiting, slot.peakWaiting);
      acquired += slot.acquired;
      waitCount += slot.waitCount;
      waitSum += slot.waitSumMs;
      usageCount += slot.usageCount;
      usageSum += slot.usageSumMs;
      for (let i = 0; i < BUCKETS; i++) {
        waitMerged[i]! += slot.waitCounts[i]!;
        usageMerged[i]! += slot.usageCounts[i]!;
      }
      const arrivalPerSec = (slot.acquired * 1000) / slot.spanMs;
      const meanUsageMs = slot.usageCount === 0 ? 0 : slot.usageSumMs / slot.usageCount;
      const meanAcquireMs = slot.waitCount === 0 ? 0 : slot.waitSumMs / slot.waitCount;
      const load = (arrivalPerSec * (meanUsageMs + meanAcquireMs)) / 1000;
      if (busiest === null || load > busiest.load) {
        busiest = { at: slot.id * this.slotMs, spanMs: slot.spanMs, arrivalPerSec, meanUsageMs, meanAcquireMs, load };
      }
    }
    if (busiest !== null) {
      busiest.arrivalPerSec = round(busiest.arrivalPerSec);
      busiest.meanUsageMs = round(busiest.meanUsageMs);
      busiest.meanAcquireMs = round(busiest.meanAcquireMs);
      busiest.load = round(busiest.load);
    }
    return {
      windowMs: this.windowMs,
      coveredMs: covered,
      samples,
      peakInUse,
      peakWaiting,
      waitingShare: samples === 0 ? 0 : round(waitingSamples / samples, 4),
      arrivalPerSec: covered === 0 ? 0 : round((acquired * 1000) / covered),
      acquireMs: {
        count: waitCount,
        mean: waitCount === 0 ? 0 : round(waitSum / waitCount),
        p50: bucketPercentile(waitMerged, waitCount, 50, overflowMs),
        p95: bucketPercentile(waitMerged, waitCount, 95, overflowMs),
        p99: bucketPercentile(waitMerged, waitCount, 99, overflowMs),
      },
      usageMs: {
        count: usageCount,
        mean: usageCount === 0 ? 0 : round(usageSum / usageCount),
        p95: bucketPercentile(usageMerged, usageCount, 95, overflowMs),
      },
      busiest,
    };
  }
}
