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
  /** Interquartile range (first and third quartile) of the per-pair values, when they judged the target. */
  iqr?: [number, number];
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

/** Fewest pairs for which an interquartile range means anything. */
const MIN_PAIRS = 4;

/** First and third quartile (linear interpolation between order statistics). */
export function quartiles(values: readonly number[]): [number, number] {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) => {
    const pos = (sorted.length - 1) * q;
    const lo = Math.floor(pos);
    const hi = Math.ceil(pos);
    return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
  };
  return [at(0.25), at(0.75)];
}

/**
 * Judges `value` against `target`. With per-pair values (`pairs`, at least four), the target is met
 * only when the whole interquartile range of the pairs clears it, not met when the whole range
 * misses it, and not resolved when the range straddles it; without them, `value` decides.
 */
export function judge(value: number, target: Target, pairs?: readonly number[]): { verdict: Verdict; iqr?: [number, number] } {
  if (!Number.isFinite(value)) return { verdict: 'not met' };
  const finite = pairs?.filter(Number.isFinite) ?? [];
  if (target.op === '==' || finite.length < MIN_PAIRS) return { verdict: meets(value, target) ? 'met' : 'not met' };
  const iqr = quartiles(finite);
  const [low, high] = iqr.map((q) => meets(q, target));
  return { verdict: low && high ? 'met' : !low && !high ? 'not met' : 'not resolved', iqr };
}

/**
 * A figure judged against its target. Its `samples` judge it as per-pair values when the figure is
 * itself per pair: a ratio (`×`) or an added time (`µs`) taken from interleaved pairs.
 */
export function figure(f: Omit<Figure, 'met' | 'verdict' | 'iqr'>): Figure {
  if (f.target === undefined) return { ...f };
  const pairs = f.valueUnit === '×' || f.valueUnit === 'µs' ? f.samples : undefined;
  const { verdict, iqr } = judge(f.value, f.target, pairs);
  return { ...f, verdict, ...(iqr ? { iqr } : {}), met: verdict === 'met' ? true : verdict === 'not met' ? false : undefined };
}
