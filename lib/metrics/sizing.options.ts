import { field, resolveSection } from '../config/option.js';
import { LOAD_SIZING_OPTIONS } from '../config/schema.metrics.js';
import type { LoadSizingOptions } from '../pool.interfaces.js';

export interface ResolvedLoadSizingOptions {
  readonly enabled: boolean;
  readonly windowMs: number;
  readonly buckets: number;
  readonly sampleIntervalMs: number;
  readonly headroom: number;
  readonly saturatedShare: number;
  readonly overProvisionedRatio: number;
  readonly cooldownMs: number;
  readonly log: boolean;
}

/** Validates `loadSizing`; defaults: a 60 s window in 6 slots, sampled every second, 25% headroom. */
export function resolveLoadSizingOptions(raw: LoadSizingOptions | undefined): ResolvedLoadSizingOptions {
  const sizing = resolveSection(LOAD_SIZING_OPTIONS, raw, field('loadSizing'));
  const slotMs = Math.floor(sizing.windowMs / sizing.buckets);
  if (sizing.sampleIntervalMs > slotMs) {
    field('loadSizing.sampleIntervalMs').fail(`an interval of at most one slot (windowMs / buckets = ${slotMs}ms), so every slot gets a sample`, sizing.sampleIntervalMs);
  }
  return sizing;
}
