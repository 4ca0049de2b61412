import { PoolConfigurationError } from '../pool.exceptions.js';
import { describeValue } from './redact.js';
import { closest } from './suggest.js';
import { MAX_TIMER_MS, msRange } from './timer-limit.js';
import type { PoolPreset } from '../pool.interfaces.js';

/**
 * Where a value was given, for the one error that names it: `option \`routing.replicaBanMs\``,
 * `environment variable \`DB_POOL_MAX_SIZE\``, `PoolHealthIndicator.check() option \`timeoutMs\``.
 */
export interface Field {
  /** The path inside the options (`routing.replicaBanMs`), used for "Did you mean" and for nested fields. */
  readonly path: string;
  /** How the error names it. */
  readonly name: string;
  /** A field nested under this one (`guards[0]`, `openTelemetry.meterName`). */
  at(sub: string): Field;
  fail(expected: string, value: unknown, hint?: string, secret?: boolean): never;
}

/** A field of an options object, named as a `forRoot()` option (or as `label(path)` says). */
export function field(path: string, label: (path: string) => string = (p) => `option \`${p}\``): Field {
  return {
    path,
    name: label(path),
    at: (sub) => field(sub.startsWith('[') || path === '' ? `${path}${sub}` : `${path}.${sub}`, label),
    fail(expected, value, hint, secret = false) {
      throw new PoolConfigurationError(label(path), expected, describeValue(value, secret), hint);
    },
  };
}

/** An environment variable, named as such in its error. */
export function envField(name: string): Field {
  return field(name, (n) => `environment variable \`${n}\``);
}

/** A default that depends on the preset (development / production / test). */
export type PresetDefault = Readonly<Record<PoolPreset, number>>;

/**
 * One option, declared once: its type and bounds (by `check`), its default, the environment
 * variable that overrides it and the line of documentation the options table shows.
 */
export interface Option<T = unknown> {
  /** The type as the options table shows it. */
  readonly type: string;
  /** What an absent value becomes: a value, one per preset, or `undefined` (derived or none; see `defaultDoc`). */
  readonly default?: T | PresetDefault;
  /** Set when `default` is one value per preset. */
  readonly perPreset?: boolean;
  /** The default as the docs state it, when it is not a plain value (derived, or computed at run time). */
  readonly defaultDoc?: string;
  /** Bounds of a numeric option (also in `check`'s message). */
  readonly min?: number;
  readonly max?: number;
  /** Environment variable that overrides it; `DB_` (or `DB_<NAME>_`) comes first unless `envGlobal`. */
  readonly env?: string;
  readonly envGlobal?: boolean;
  /** pg's or pg-pool's name for the same setting, read as this option (`value × scale`). */
  readonly pgPoolName?: { readonly name: string; readonly scale: number };
  /** One line of documentation. */
  readonly doc: string;
  /** Validates a given value (never `undefined`) and returns it in its resolved form. */
  readonly check: (value: unknown, at: Field) => T;
}

/** A group of options under one key (`routing`, `metrics`, …), in the order the docs list them. */
export type Section = Readonly<Record<string, Option<any>>>;

export type SectionValues<S extends Section> = { -readonly [K in keyof S]: ReturnType<S[K]['check']> };

const SECRET_LOOKING_KEY = /pas+w|pwd|secret|token|credential|auth/i;

/** A value of an unknown key that looks like a secret (or is likely a misspelt `password`) is never printed. */
export function looksSecret(key: string, guess: string | undefined): boolean {
  return SECRET_LOOKING_KEY.test(key) || guess === 'password';
}

/** Fails on the first key `known` does not list, naming the known ones and the closest spelling. */
export function checkKeys(value: object, known: readonly string[], at: Field): void {
  for (const key of Object.keys(value)) {
    if (known.includes(key)) continue;
    const guess = closest(key, known);
    const inner = at.at(key);
    inner.fail(
      `one of the known options (${known.join(', ')})`,
      (value as Record<string, unknown>)[key],
      guess ? `Did you mean \`${at.at(guess).path}\`?` : undefined,
      looksSecret(key, guess),
    );
  }
}

/** An options section: absent means `{}`; anything but a plain object (null included) is refused. */
export function checkSectionObject(value: unknown, at: Field, expected = 'an object'): Record<string, unknown> {
  if (value === undefined) return {};
  if (typeof value !== 'object' || value === null || Array.isArray(value)) at.fail(expected, value);
  return value as Record<string, unknown>;
}

/** The value of one option: the given one checked, else its default (the preset's when it has one per preset). */
export function readOption<O extends Option<any>>(option: O, given: unknown, at: Field, preset?: PoolPreset): ReturnType<O['check']> {
  if (given !== undefined) return option.check(given, at);
  const fallback = option.default;
  if (option.perPreset) return (fallback as PresetDefault)[preset ?? 'development'] as ReturnType<O['check']>;
  return fallback as ReturnType<O['check']>;
}

/**
 * The one validator every options object goes through (the module's sections, `preparedStatements`,
 * `metrics`, the health check's options): the object's shape, unknown keys (with "Did you mean"),
 * every value's type and bounds, and the defaults for what was left out.
 */
export function resolveSection<S extends Section>(section: S, raw: unknown, at: Field, options: { expected?: string; preset?: PoolPreset } = {}): SectionValues<S> {
  const input = checkSectionObject(raw, at, options.expected);
  checkKeys(input, Object.keys(section), at);
  const out = {} as Record<string, unknown>;
  for (const [key, option] of Object.entries(section)) out[key] = readOption(option, input[key], at.at(key), options.preset);
  return out as SectionValues<S>;
}

// The checks: each refuses a bad value with the expected form, and returns the good one.

export const isInt = (value: unknown, min: number, max: number): value is number =>
  typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max;

/** An integer in `[min, max]`: "an integer from 0 and up", or "from 1 to 65535". */
export function int(min: number, max = Number.MAX_SAFE_INTEGER): (value: unknown, at: Field) => number {
  return (value: unknown, at: Field): number => {
    if (!isInt(value, min, max)) at.fail(max === Number.MAX_SAFE_INTEGER ? `an integer from ${min} and up` : `an integer from ${min} to ${max}`, value);
    return value;
  };
}

/** A millisecond value: an integer from `min` up to the longest timer delay. */
export function ms(min: number): (value: unknown, at: Field) => number {
  return (value: unknown, at: Field): number => {
    if (!isInt(value, min, MAX_TIMER_MS)) at.fail(msRange(min), value);
    return value;
  };
}

export function bool(value: unknown, at: Field): boolean {
  if (typeof value !== 'boolean') at.fail('true or false', value);
  return value;
}

export function nonEmptyString(value: unknown, at: Field): string {
  if (typeof value !== 'string' || value.trim() === '') at.fail('a non-empty string', value);
  return value;
}

export function oneOf<T extends string>(allowed: readonly T[]): (value: unknown, at: Field) => T {
  return (value, at) => {
    if (typeof value !== 'string' || !allowed.includes(value as T)) at.fail(`one of ${allowed.map((a) => `"${a}"`).join(', ')}`, value);
    return value as T;
  };
}

/** A finite number in `(low, high]` (or `[low, high]` with `inclusive`), described by `expected`. */
export function share(expected: string, low = 0, high = 1, inclusive = false): (value: unknown, at: Field) => number {
  return (value, at) => {
    const ok = typeof value === 'number' && Number.isFinite(value) && (inclusive ? value >= low : value > low) && value <= high;
    if (!ok) at.fail(expected, value);
    return value as number;
  };
}

export function fn<T>(expected: string): (value: unknown, at: Field) => T {
  return (value, at) => {
    if (typeof value !== 'function') at.fail(expected, value);
    return value as T;
  };
}

/** A millisecond option from `min` up to the longest timer delay: type, bounds and check. */
export function msOption(min: number): { type: string; min: number; max: number; check: (value: unknown, at: Field) => number } {
  return { type: `ms ≥ ${min}`, min, max: MAX_TIMER_MS, check: ms(min) };
}

/** An integer option in `[min, max]`: type, bounds and check. */
export function intOption(min: number, max?: number): { type: string; min: number; max: number | undefined; check: (value: unknown, at: Field) => number } {
  return { type: max === undefined ? `integer ≥ ${min}` : `integer ${min}–${max}`, min, max, check: int(min, max) };
}

/** An option declaration: its values have the type its `check` returns. */
export function option<const S extends Option<any>>(spec: S): S {
  return spec;
}
