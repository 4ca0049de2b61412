import { MAX_TIMER_MS } from '../config/timer-limit.js';
import type { LoadSizingOptions } from '../pool.interfaces.js';
import { checkBool, checkInt, checkObject, fail } from './metrics.options.js';

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

const LOAD_SIZING_KEYS = new Set([
  'enabled', 'windowMs', 'buckets', 'sampleIntervalMs', 'headroom', 'saturatedShare', 'overProvisionedRatio', 'cooldownMs', 'log',
]);

function checkHeadroom(path: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > 10) {
    fail(path, 'a number from 0 to 10 (0.25 adds 25% above the observed load)', value);
  }
  return value;
}

function checkShare(path: string, value: unknown, fallback: number, of: string): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0 || value > 1) fail(path, `a number greater than 0 and at most 1 (a share of ${of})`, value);
  return value;
}

/** Validates `loadSizing`; defaults: a 60 s window in 6 slots, sampled every second, 25% headroom. */
export function resolveLoadSizingOptions(raw: LoadSizingOptions | undefined): ResolvedLoadSizingOptions {
  const input = checkObject('loadSizing', raw, LOAD_SIZING_KEYS);
  const windowMs = checkInt('loadSizing.windowMs', input.windowMs, 60_000, 1000, MAX_TIMER_MS);
  const buckets = checkInt('loadSizing.buckets', input.buckets, 6, 1, 600);
  const sampleIntervalMs = checkInt('loadSizing.sampleIntervalMs', input.sampleIntervalMs, 1000, 50, MAX_TIMER_MS);
  const slotMs = Math.floor(windowMs / buckets);
  if (sampleIntervalMs > slotMs) {
    fail('loadSizing.sampleIntervalMs', `an interval of at most one slot (windowMs / buckets = ${slotMs}ms), so every slot gets a sample`, sampleIntervalMs);
  }
  return {
    enabled: checkBool('loadSizing.enabled', input.enabled, true),
    windowMs,
    buckets,
    sampleIntervalMs,
    headroom: checkHeadroom('loadSizing.headroom', input.headroom, 0.25),
    saturatedShare: checkShare('loadSizing.saturatedShare', input.saturatedShare, 0.5, 'the samples in the window'),
    overProvisionedRatio: checkShare('loadSizing.overProvisionedRatio', input.overProvisionedRatio, 0.25, 'max'),
    cooldownMs: checkInt('loadSizing.cooldownMs', input.cooldownMs, 300_000, 0, MAX_TIMER_MS),
    log: checkBool('loadSizing.log', input.log, true),
  };
}
