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
  met?: boolean;
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

export function figure(f: Omit<Figure, 'met'>): Figure {
  return { ...f, met: meets(f.value, f.target) };
}
