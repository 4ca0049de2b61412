/** One reported number: usually ours vs raw and their ratio, sometimes an added cost. */
export interface Figure {
  /** Stable id, e.g. `1.c64.leak-off`. */
  id: string;
  label: string;
  /** Median of our side and of the reference side (in `unit`), when the figure compares two. */
  ours?: number;
  raw?: number;
  /** Name of the reference side (`raw pg.Pool`, `connect-per-request`, …). */
  reference?: string;
  unit?: string;
  /** The figure itself (a ratio, µs, …) in `valueUnit`. */
  value: number;
  valueUnit: string;
  target?: Target;
  /** `verdict` is `met`: true; `not met`: false; `not resolved`: undefined. */
  met?: boolean;
  /** How the figure stands against its target (see `judge`); unset without a target. */
  verdict?: Verdict;
  /** 95 % confidence interval of the median of the per-pair values, when they judged the target (see `medianInterval`). */
  ci?: [number, number];
  /** Per-repetition values of the figure, for the curious. */
  samples?: number[];
  note?: string;
  /** What the shortfall comes from, printed under "Targets not met" when `met` is false. */
  whenNotMet?: string;
}

export interface Target {
  op: '>=' | '<=' | '==';
  value: number;
  text: string;
}

export interface ScenarioResult {
  id: string;
  title: string;
  method: string;
  figures: Figure[];
  details?: Record<string, unknown>;
  error?: string;
  /** Distinct lines Nest and the library logged at warn/error level while the scenario ran. */
  libraryLog?: string[];
  durationMs: number;
}

export function atLeast(value: number, text = `≥ ${value}×`): Target {
  return { op: '>=', value, text };
}

export function atMost(value: number, text: string): Target {
  return { op: '<=', value, text };
}

export function meets(value: number, target: Target | undefined): boolean | undefined {
  if (target === undefined || !Number.isFinite(value)) return undefined;
  if (target.op === '>=') return value >= target.value;
  if (target.op === '<=') return value <= target.value;
  return value === target.value;
}

/**
 * `met`: the figure clears its target beyond the run's noise; `not met`: it misses it beyond the
 * noise, or there is no figure (a scenario that failed or a NaN is a miss, never a pass);
 * `not resolved`: the noise straddles the target, so this run cannot tell.
 */
export type Verdict = 'met' | 'not met' | 'not resolved';

/** Confidence level of the interval that judges a target. */
export const CONFIDENCE = 0.95;

/**
 * Distribution-free confidence interval of the median of `values` at `level`: the order statistics
 * x(k) and x(n−k+1) (1-based, ascending) for the largest k with P(Binomial(n, ½) < k) ≤ (1 − level) / 2,
 * so the true median lies between them with at least that probability whatever the distribution.
 * Unlike the spread of the values, it narrows as repetitions are added. `undefined` when there are
 * too few values for any such interval (fewer than 6 at 95 %).
 */
export function medianInterval(values: readonly number[], level = CONFIDENCE): [number, number] | undefined {
  const sorted = [...values].sort((a, b) => a - b);
  const n = sorted.length;
  const tail = (1 - level) / 2;
  // P(Binomial(n, ½) = i), accumulated from i = 0 upwards.
  let term = 0.5 ** n;
  let below = 0;
  let k = 0;
  for (let i = 0; i < n / 2; i++) {
    if (below + term > tail) break;
    below += term;
    k = i + 1;
    term = (term * (n - i)) / (i + 1);
  }
  if (k === 0) return undefined;
  return [sorted[k - 1]!, sorted[n - k]!];
}

/**
 * Judges `value` against `target`. With per-pair values (`pairs`, enough for a 95 % interval), the
 * target is met only when the whole confidence interval of their median clears it, not met when the
 * whole interval misses it, and not resolved when it straddles it; without them, `value` decides.
 */
export function judge(value: number, target: Target, pairs?: readonly number[]): { verdict: Verdict; ci?: [number, number] } {
  if (!Number.isFinite(value)) return { verdict: 'not met' };
  const ci = target.op === '==' ? undefined : medianInterval(pairs?.filter(Number.isFinite) ?? []);
  if (ci === undefined) return { verdict: meets(value, target) ? 'met' : 'not met' };
  const [low, high] = ci.map((q) => meets(q, target));
  return { verdict: low && high ? 'met' : !low && !high ? 'not met' : 'not resolved', ci };
}

/**
 * A figure judged against its target. Its `samples` judge it as per-pair values when the figure is
 * itself per pair: a ratio (`×`) or an added time (`µs`) taken from interleaved pairs.
 */
export function figure(f: Omit<Figure, 'met' | 'verdict' | 'ci'>): Figure {
  if (f.target === undefined) return { ...f };
  const pairs = f.valueUnit === '×' || f.valueUnit === 'µs' ? f.samples : undefined;
  const { verdict, ci } = judge(f.value, f.target, pairs);
  return { ...f, verdict, ...(ci ? { ci } : {}), met: verdict === 'met' ? true : verdict === 'not met' ? false : undefined };
}
