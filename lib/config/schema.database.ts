import type { PoolClient } from 'pg';
import { DEFAULT_APPLICATION_NAME } from '../pool.constants.js';
import type { ConnectContext, PoolPreset } from '../pool.interfaces.js';
import { RESET_MODES, type ResetOnRelease } from './reset-modes.js';
import { bool, fn, intOption, msOption, nonEmptyString, oneOf, option, type Field } from './option.js';

export const PRESET_NAMES: readonly PoolPreset[] = ['development', 'production', 'test'];

/** Connection objects are `pg.PoolConfig`s; `resolveNode` checks each (see `NODE_OPTIONS`). */
const node = (value: unknown) => value;

/**
 * Options of one database (`PoolModule.forRoot()`), besides the pool settings and the sections.
 * Order: the order the options table and "one of the known options" list them.
 */
export const DATABASE_OPTIONS = {
  name: option({ type: 'string', defaultDoc: 'the default database', doc: 'Name to inject with `@InjectDatabase(name)` / `@InjectPool(name)`.', check: nonEmptyString }),
  isGlobal: option({ type: 'boolean', default: true, doc: 'Injectable everywhere without importing the module again.', check: bool }),
  primary: option({
    type: 'node | node[]',
    env: 'PRIMARY_URL',
    defaultDoc: 'required, or `DB_PRIMARY_URL`',
    doc: 'The primary: any `pg.PoolConfig` field plus the node options and pool settings; a multi-host URL or a list names every server that may be the primary.',
    check: node,
  }),
  replicas: option({
    type: 'node[]',
    env: 'REPLICA_URLS',
    defaultDoc: '`[]`, or `DB_REPLICA_URLS`',
    doc: 'Read replicas, in order, the same shape as `primary`.',
    check: node,
  }),
  preset: option({
    type: '"development" | "production" | "test"',
    env: 'DB_ENV',
    envGlobal: true,
    defaultDoc: '`DB_ENV`, else `NODE_ENV`, else `development`',
    doc: 'Sizing and timeout preset.',
    check: oneOf(PRESET_NAMES),
  }),
  applicationName: option({
    type: 'string (≤ 63 bytes)',
    default: DEFAULT_APPLICATION_NAME,
    doc: '`application_name` shown in `pg_stat_activity`.',
    check: (value: unknown, at: Field) => {
      const name = nonEmptyString(value, at);
      if (Buffer.byteLength(name) > 63) at.fail('at most 63 bytes', value);
      return name;
    },
  }),
  timezone: option({ type: 'string', default: 'UTC', doc: 'Session `TimeZone` of every connection.', check: nonEmptyString }),
  onConnect: option({
    type: 'function',
    defaultDoc: 'none',
    doc: 'Runs once per new connection before its first use, and again after each session reset; a throw discards the connection.',
    check: fn<((client: PoolClient, context: ConnectContext) => void | Promise<void>) | undefined>('a function (client, { database, pool, role }) => void | Promise<void>'),
  }),
  lazy: option({ type: 'boolean', default: false, doc: 'Open nothing at start: no warm-up, sizing advisor or lag check; the first query connects.', check: bool }),
  retryAttempts: option({ ...intOption(1), default: 5, doc: "Attempts to open each pool's first connection at start." }),
  retryDelayMs: option({ ...msOption(0), default: 500, doc: 'First retry delay; it doubles each attempt (max 30 s), with ±20 % jitter.' }),
  instances: option({
    ...intOption(1),
    default: 1,
    env: 'APP_INSTANCES',
    envGlobal: true,
    defaultDoc: '`APP_INSTANCES`, else `1`',
    doc: 'App instances sharing the servers, used by the sizing advisor.',
  }),
  sizingAdvisor: option({ type: 'boolean', default: true, doc: "At start, compare the pools' `max` × `instances` with 80 % of each server's `max_connections`, and warn.", check: bool }),
  shutdownTimeoutMs: option({ ...msOption(0), default: 10_000, doc: 'On shutdown, how long to wait for checked-out clients before closing them.' }),
  slowQueryMs: option({ ...msOption(0), default: 1000, doc: 'Slower statements emit a `slow-query` event; `0` disables.' }),
  pgbouncer: option({ type: 'boolean', default: false, doc: 'The servers sit behind PgBouncer in transaction mode: no session state.', check: bool }),
  resetOnRelease: option({
    type: '"auto" | "always" | "never"',
    default: 'auto',
    doc: 'When session state a borrower changed is reset before the connection serves anyone else.',
    check: oneOf<ResetOnRelease>(RESET_MODES),
  }),
  env: option({
    type: 'object',
    defaultDoc: '`process.env`',
    doc: 'Where `DB_*` and `APP_INSTANCES` are read from (handy in tests).',
    check: (value: unknown, at: Field): Record<string, string | undefined> | undefined => {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) at.fail('an object of environment variables such as process.env', value);
      return value as Record<string, string | undefined>;
    },
  }),
} as const;
