import type { Field } from './option.js';
import { POOL_KEYS, POOL_SETTINGS, type PoolKey } from './schema.pool.js';

/** pg-pool's and pg's option names the module reads as its own, from the schema (`pgPoolName` of a pool setting). */
const MAPPED: ReadonlyMap<string, { to: PoolKey; scale: number }> = new Map(
  POOL_KEYS.flatMap((to) => {
    const alias = (POOL_SETTINGS[to] as { pgPoolName?: { name: string; scale: number } }).pgPoolName;
    return alias === undefined ? [] : [[alias.name, { to, scale: alias.scale }] as const];
  }),
);

/** pg-pool's names of the pool settings (`idleTimeoutMillis`, …), accepted wherever the module's names are. */
export const PG_POOL_NAMES: readonly string[] = [...MAPPED.keys()];

/** pg-pool option names the module refuses, with what to use instead. */
const REFUSED: Readonly<Record<string, string>> = {
  Promise: 'the module returns native promises',
};

/** pg-pool hooks the module calls as pg-pool does (a function, if given). */
const HOOKS = ['log', 'verify', 'onConnect'];

/**
 * pg-pool's (and pg's) option names, read as `new pg.Pool(config)` reads them, the same way on a
 * node (`primary`, `replicas[i]`) and database-wide: `idleTimeoutMillis` → `idleTimeoutMs`,
 * `connectionTimeoutMillis` → `acquireTimeoutMs` (0, pg-pool's "no deadline", is refused: every
 * wait has one), `maxLifetimeSeconds` → `maxLifetimeMs`, `poolSize` → `max`,
 * `keepAliveInitialDelayMillis` → `keepAliveMs` and `keepAlive: false` → `keepAliveMs: 0`. The translated value
 * then follows the module's rules for that setting (bounds, precedence, environment variables).
 * On a node, the hooks `log`, `verify` and `onConnect` must be functions (the node pool calls them)
 * and `Promise` fails naming what the module does instead. Giving both a pg-pool name and the
 * module's name for one setting, with different values, fails.
 */
export function translatePgPoolNames<T extends object>(given: T, at: Field, node = true): T {
  const input = given as Record<string, unknown>;
  let out: Record<string, unknown> | undefined;
  for (const key of Object.keys(input)) {
    const value = input[key];
    if (value === undefined) continue;
    const field = at.at(key);
    const refused = REFUSED[key];
    if (node && refused !== undefined) {
      field.fail(`no \`${key}\` (pg-pool's option; this module has none)`, value, `Instead, ${refused}.`);
    }
    if (node && HOOKS.includes(key) && typeof value !== 'function') field.fail("a function (pg-pool's hook)", value);
    if (key === 'keepAlive' && value === false) {
      // pg's switch for TCP keep-alive: off is `keepAliveMs: 0`.
      const own = input.keepAliveMs;
      if (own !== undefined && own !== 0) field.fail(`true, or no \`keepAlive\` while \`${at.at('keepAliveMs').path}\` is ${String(own)}`, value, 'Give `keepAliveMs: 0` to turn keep-alive off.');
      out ??= { ...input };
      out.keepAliveMs = 0;
      if (!node) delete out.keepAlive;
      continue;
    }
    const mapped = MAPPED.get(key);
    if (mapped === undefined) continue;
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
      field.fail(`a number from 0 and up (pg-pool's name for \`${mapped.to}\`)`, value);
    }
    if (key === 'connectionTimeoutMillis' && value === 0) {
      field.fail(
        'a number of milliseconds from 1 and up',
        value,
        "pg-pool reads 0 as \"wait forever\"; every wait of this module has a deadline. Give `acquireTimeoutMs` (or leave both out for the preset's).",
      );
    }
    const translated = (value as number) * mapped.scale;
    const own = input[mapped.to];
    if (own !== undefined && own !== translated) {
      field.fail(
        `the same setting as \`${at.at(mapped.to).path}\` (${String(own)}), or only one of them`,
        value,
        `\`${key}\` is pg-pool's name for \`${mapped.to}\`${mapped.scale === 1 ? '' : ` (in seconds)`}: give one.`,
      );
    }
    out ??= { ...input };
    delete out[key];
    out[mapped.to] = translated;
  }
  return (out ?? given) as T;
}

/** A node pool's settings under pg-pool's names, as `pool.options` shows them on its `pg.Pool` face. */
export function pgPoolOptionsView(config: { max: number; min: number; idleTimeoutMs: number; acquireTimeoutMs: number; maxUses: number }) {
  return Object.freeze({ max: config.max, min: config.min, idleTimeoutMillis: config.idleTimeoutMs, connectionTimeoutMillis: config.acquireTimeoutMs, maxUses: config.maxUses });
}
