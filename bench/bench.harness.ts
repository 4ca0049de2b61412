import { performance } from 'node:perf_hooks';

export interface LoopResult {
  ops: number;
  elapsedMs: number;
  /** Operations per second. */
  rate: number;
  /** CPU time (user + system) of this process per operation, µs; includes everything else the process did meanwhile. */
  cpuUs: number;
}

/**
 * `concurrency` callers each run `op` back to back until `durationMs` has passed; the rate is
 * completed operations over the wall time until the last caller finished.
 */
export async function closedLoop(op: () => Promise<unknown>, concurrency: number, durationMs: number): Promise<LoopResult> {
  const cpu = process.cpuUsage();
  const start = performance.now();
  const deadline = start + durationMs;
  let ops = 0;
  const caller = async () => {
    while (performance.now() < deadline) {
      await op();
      ops++;
    }
  };
  const callers: Promise<void>[] = [];
  for (let i = 0; i < concurrency; i++) callers.push(caller());
  await Promise.all(callers);
  const elapsedMs = performance.now() - start;
  const used = process.cpuUsage(cpu);
  return { ops, elapsedMs, rate: (ops * 1000) / elapsedMs, cpuUs: (used.user + used.system) / Math.max(1, ops) };
}

/** Runs exactly `total` operations with `concurrency` callers, or stops at `capMs`. */
export async function countedLoop(op: () => Promise<unknown>, concurrency: number, total: number, capMs: number): Promise<LoopResult> {
  const cpu = process.cpuUsage();
  const start = performance.now();
  const deadline = start + capMs;
  let started = 0;
  let ops = 0;
  const caller = async () => {
    while (started < total && performance.now() < deadline) {
      started++;
      await op();
      ops++;
    }
  };
  const callers: Promise<void>[] = [];
  for (let i = 0; i < concurrency; i++) callers.push(caller());
  await Promise.all(callers);
  const elapsedMs = performance.now() - start;
  const used = process.cpuUsage(cpu);
  return { ops, elapsedMs, rate: (ops * 1000) / elapsedMs, cpuUs: (used.user + used.system) / Math.max(1, ops) };
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Nearest-rank percentile of unsorted samples. */
export function percentile(values: ArrayLike<number>, p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = Float64Array.from(values as ArrayLike<number>).sort();
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

export interface Paired<T> {
  ours: T[];
  raw: T[];
}

/**
 * Two warm-up rounds, then `reps` repetitions interleaved: ours, raw | raw, ours | ours, raw …
 * Each pair runs back to back, and which side goes first alternates, so a load trend (other
 * processes starting or finishing) favours neither side.
 */
export async function interleave<T>(reps: number, ours: () => Promise<T>, raw: () => Promise<T>, warmUp = true): Promise<Paired<T>> {
  const [o, r] = await interleaveSides(reps, [ours, raw], warmUp);
  return { ours: o!, raw: r! };
}

/** Rounds run and thrown away before the measured ones: the JIT and the servers' caches settle. */
const WARM_UP_ROUNDS = 2;

/** `interleave` for any number of sides: a, b, c | c, b, a | a, b, c … */
export async function interleaveSides<T>(reps: number, sides: ReadonlyArray<() => Promise<T>>, warmUp = true): Promise<T[][]> {
  const result: T[][] = sides.map(() => []);
  for (let i = warmUp ? -WARM_UP_ROUNDS : 0; i < reps; i++) {
    const order = sides.map((_, s) => (i % 2 === 0 ? s : sides.length - 1 - s));
    const round: T[] = [];
    for (const s of order) round[s] = await sides[s]!();
    if (i >= 0) round.forEach((value, s) => result[s]!.push(value));
  }
  return result;
}

/** Median of the per-repetition ratios ours / raw. */
export function pairedRatio(ours: readonly number[], raw: readonly number[]): number {
  return median(ours.map((o, i) => o / raw[i]!));
}

/** Waits `ms`, keeping the process alive meanwhile (an unref'd timer would let a run with nothing else pending exit mid-wait). */
export function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Rejects when `promise` does not settle within `ms`: no benchmark step can hang. */
export function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Cannot finish ${what} because it took longer than ${ms}ms. Please make sure that the cluster is up (bash scripts/cluster.sh status).`)), ms);
    timer.unref();
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
