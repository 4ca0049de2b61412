import type { PoolPreset } from '../pool.interfaces.js';
import { envField, field, readOption, type Field, type Option } from './option.js';
import { POOL_KEYS, POOL_SETTINGS, type PoolKey } from './schema.pool.js';

export type Env = Record<string, string | undefined>;

/** How far past `statementTimeoutMs` the default client-side statement deadline (`queryTimeoutMs`) lies. */
export const QUERY_DEADLINE_GRACE_MS = 5000;

/** One pool setting and where it came from, so an error names the field the user wrote. */
interface PoolValue {
  value: number;
  /** The field that set it, or `undefined` when it came from the preset or a built-in default. */
  at: Field | undefined;
  /** How an error about another setting names this one's origin (`option \`max\``, `the development preset`). */
  origin: string;
  /** The value as the user wrote it (an environment variable's raw text). */
  given: unknown;
  /** Set by an environment variable: wins over node-level options too. */
  fromEnv: boolean;
}

export type PoolValues = Record<PoolKey, PoolValue>;

/** An environment variable holding a whole number: "an integer from `min` and up", or absent. */
export function envInt(env: Env, name: string, min: number): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw === '') return undefined;
  if (!/^\s*\d+\s*$/.test(raw)) envField(name).fail(`an integer from ${min} and up`, raw);
  const value = Number(raw);
  if (value < min) envField(name).fail(`an integer from ${min} and up`, raw);
  return value;
}

/** Checks a pool setting; an error shows `given` (an environment variable's raw text) as what the user wrote. */
function checked(key: PoolKey, at: Field, given: unknown, value: unknown): number {
  const reporter: Field = given === value ? at : { ...at, fail: (expected, _value, hint, secret) => at.fail(expected, given, hint, secret) };
  return POOL_SETTINGS[key].check(value, reporter);
}

/** Database-wide values: preset < explicit option < `DB_*` environment variable. */
export function basePoolValues(input: Record<string, unknown>, preset: PoolPreset, env: Env, prefix: string): PoolValues {
  const values = {} as PoolValues;
  for (const key of POOL_KEYS) {
    const option: Option<number> & { min: number } = POOL_SETTINGS[key];
    const envName = option.env === undefined ? undefined : `${prefix}${option.env}`;
    const fromEnv = envName === undefined ? undefined : envInt(env, envName, option.min);
    const explicit = input[key];
    if (fromEnv !== undefined) {
      const at = envField(envName!);
      values[key] = { value: checked(key, at, env[envName!], fromEnv), at, origin: at.name, given: env[envName!], fromEnv: true };
    } else if (explicit !== undefined) {
      const at = field(key);
      values[key] = { value: checked(key, at, explicit, explicit), at, origin: at.name, given: explicit, fromEnv: false };
    } else {
      // No default (`queryTimeoutMs`): derived in plainPoolValues.
      const fallback = option.default === undefined ? -1 : readOption(option, undefined, field(key), preset);
      values[key] = { value: fallback, at: undefined, origin: option.perPreset ? `the ${preset} preset` : 'the default', given: fallback, fromEnv: false };
    }
  }
  return values;
}

/** A node's own values win over the database-wide ones, except over `DB_*` environment variables. */
export function overridePoolValues(base: PoolValues, node: Record<string, unknown>, path: string): PoolValues {
  const values = { ...base };
  for (const key of POOL_KEYS) {
    const explicit = node[key];
    if (explicit === undefined) continue;
    const at = field(`${path}.${key}`);
    const value = checked(key, at, explicit, explicit);
    if (!base[key].fromEnv) values[key] = { value, at, origin: at.name, given: explicit, fromEnv: false };
  }
  reconcileMinMax(values);
  return values;
}

/** `min` must not exceed `max`; a preset's `min` quietly follows a smaller `max` the user chose. */
export function reconcileMinMax(values: PoolValues): void {
  const { min, max } = values;
  if (min.value <= max.value) return;
  if (min.at === undefined) {
    values.min = { ...min, value: max.value };
    return;
  }
  const origin = max.at === undefined ? max.origin : `set by ${max.origin}`;
  min.at.fail(`an integer from 0 to the pool's max, ${max.value} (${origin})`, min.given);
}

/** The numbers a node runs with; `queryTimeoutMs` left out becomes `statementTimeoutMs` + the grace. */
export function plainPoolValues(values: PoolValues): Record<PoolKey, number> {
  const out = {} as Record<PoolKey, number>;
  for (const key of POOL_KEYS) out[key] = values[key].value;
  // The client-side deadline sits past the server's own statement_timeout, so the server's fires first.
  if (out.queryTimeoutMs === -1) out.queryTimeoutMs = out.statementTimeoutMs > 0 ? out.statementTimeoutMs + QUERY_DEADLINE_GRACE_MS : 0;
  return out;
}
