import type { PoolPreset } from '../pool.interfaces.js';

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

export const POOL_PRESETS: Readonly<Record<PoolPreset, Readonly<PresetValues>>> = Object.freeze({
  development: Object.freeze({
    min: 5,
    max: 20,
    acquireTimeoutMs: 10_000,
    idleTimeoutMs: 300_000,
    statementTimeoutMs: 60_000,
    maxUses: 50_000,
    connectTimeoutMs: 5_000,
    validationTimeoutMs: 5_000,
    keepAliveMs: 10_000,
  }),
  production: Object.freeze({
    min: 10,
    max: 50,
    acquireTimeoutMs: 10_000,
    idleTimeoutMs: 300_000,
    statementTimeoutMs: 60_000,
    maxUses: 50_000,
    connectTimeoutMs: 5_000,
    validationTimeoutMs: 5_000,
    keepAliveMs: 10_000,
  }),
  test: Object.freeze({
    min: 2,
    max: 5,
    acquireTimeoutMs: 5_000,
    idleTimeoutMs: 60_000,
    statementTimeoutMs: 30_000,
    maxUses: 10_000,
    connectTimeoutMs: 5_000,
    validationTimeoutMs: 2_000,
    keepAliveMs: 10_000,
  }),
});

export const PRESET_NAMES = Object.keys(POOL_PRESETS) as PoolPreset[];
