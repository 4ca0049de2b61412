import { PoolConfigurationError } from '../pool.exceptions.js';
import { describeValue } from './redact.js';

/** pg-pool option names the module reads as its own (a node's value wins over the preset, as the module's name would). */
const MAPPED: Readonly<Record<string, { to: string; scale: number }>> = {
  idleTimeoutMillis: { to: 'idleTimeoutMs', scale: 1 },
  connectionTimeoutMillis: { to: 'acquireTimeoutMs', scale: 1 },
  maxLifetimeSeconds: { to: 'maxLifetimeMs', scale: 1000 },
  poolSize: { to: 'max', scale: 1 },
};

/** pg-pool option names the module refuses, with what to use instead. */
const REFUSED: Readonly<Record<string, string>> = {
  Promise: 'the module returns native promises',
};

/** pg-pool hooks the module calls as pg-pool does (a function, if given). */
const HOOKS = ['log', 'verify', 'onConnect'];

/**
 * A node's pg-pool option names, read as `new pg.Pool(config)` reads them:
 * `idleTimeoutMillis` → `idleTimeoutMs`, `connectionTimeoutMillis` → `acquireTimeoutMs` (0, pg-pool's
 * "no deadline", is refused: every wait has one), `maxLifetimeSeconds` → `maxLifetimeMs`, `poolSize`
 * → `max`. The hooks `log`, `verify` and `onConnect` must be functions (the node pool calls them);
 * `Promise` fails naming what the module does instead.
 * Giving both a pg-pool name and the module's name for one setting, with different values, fails.
 */
export function translatePgPoolNames<T extends object>(node: T, path: string): T {
  const given = node as Record<string, unknown>;
  let out: Record<string, unknown> | undefined;
  for (const key of Object.keys(given)) {
    const value = given[key];
    if (value === undefined) continue;
    const refused = REFUSED[key];
    if (refused !== undefined) {
      throw new PoolConfigurationError(`option \`${path}.${key}\``, `no \`${key}\` (pg-pool's option; this module has none)`, describeValue(value, false), `Instead, ${refused}.`);
    }
    if (HOOKS.includes(key) && typeof value !== 'function') {
      throw new PoolConfigurationError(`option \`${path}.${key}\``, "a function (pg-pool's hook)", describeValue(value, false));
    }
    const mapped = MAPPED[key];
    if (mapped === undefined) continue;
    const field = `option \`${path}.${key}\``;
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
      throw new PoolConfigurationError(field, `a number from 0 and up (pg-pool's name for \`${mapped.to}\`)`, describeValue(value, false));
    }
    if (key === 'connectionTimeoutMillis' && value === 0) {
      throw new PoolConfigurationError(
        field,
        'a number of milliseconds from 1 and up',
        '0',
        "pg-pool reads 0 as \"wait forever\"; every wait of this module has a deadline. Give `acquireTimeoutMs` (or leave both out for the preset's).",
      );
    }
    const translated = value * mapped.scale;
    const own = given[mapped.to];
    if (own !== undefined && own !== translated) {
      throw new PoolConfigurationError(
        field,
        `the same setting as \`${path}.${mapped.to}\` (${String(own)}), or only one of them`,
        describeValue(value, false),
        `\`${key}\` is pg-pool's name for \`${mapped.to}\`${mapped.scale === 1 ? '' : ` (in seconds)`}: give one.`,
      );
    }
    out ??= { ...given };
    delete out[key];
    out[mapped.to] = translated;
  }
  return (out ?? node) as T;
}
