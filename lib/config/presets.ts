import type { PoolPreset } from '../pool.interfaces.js';
import type { PresetDefault } from './option.js';
import { POOL_KEYS, POOL_SETTINGS, type PoolKey } from './schema.pool.js';

export { PRESET_NAMES } from './schema.database.js';

/** The pool settings whose default depends on the preset (from the option schema). */
export interface PresetValues {
  min: number;
  max: number;
  acquireTimeoutMs: number;
  idleTimeoutMs: number;
  statementTimeoutMs: number;
  maxUses: number;
  connectTimeoutMs: number;
  validationTimeoutMs: number;
  keepAliveMs: number;
}

function presetValues(preset: PoolPreset): Readonly<PresetValues> {
  const out: Partial<Record<PoolKey, number>> = {};
  for (const key of POOL_KEYS) {
    const option = POOL_SETTINGS[key] as { perPreset?: boolean; default?: unknown };
    if (option.perPreset) out[key] = (option.default as PresetDefault)[preset];
  }
  return Object.freeze(out as PresetValues);
}

/** Each preset's pool settings, as the option schema declares them. */
export const POOL_PRESETS: Readonly<Record<PoolPreset, Readonly<PresetValues>>> = Object.freeze({
  development: presetValues('development'),
  production: presetValues('production'),
  test: presetValues('test'),
});
