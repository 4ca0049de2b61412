import { MIN_LEAK_DETECTION_THRESHOLD_MS } from '../pool.constants.js';
import { bool, intOption, ms, msOption, nonEmptyString, option, type Field } from './option.js';

/**
 * Pool settings: set database-wide or per node (`primary`, `replicas[i]`); a node's own value wins
 * over the database-wide one, a `DB_*` environment variable over both. Preset columns are
 * development / production / test.
 */
export const POOL_SETTINGS = {
  min: option({
    ...intOption(0),
    default: { development: 5, production: 10, test: 2 },
    perPreset: true,
    env: 'POOL_MIN_SIZE',
    doc: 'Connections opened at start and kept open; a preset min above the `max` you set is lowered to that max.',
  }),
  max: option({
    ...intOption(1),
    default: { development: 20, production: 50, test: 5 },
    perPreset: true,
    env: 'POOL_MAX_SIZE',
    pgPoolName: { name: 'poolSize', scale: 1 },
    doc: 'Maximum connections per pool.',
  }),
  acquireTimeoutMs: option({
    ...msOption(1),
    default: { development: 10_000, production: 10_000, test: 5_000 },
    perPreset: true,
    env: 'POOL_ACQUIRE_TIMEOUT_MS',
    pgPoolName: { name: 'connectionTimeoutMillis', scale: 1 },
    doc: 'How long a caller waits for a connection (pool full or connecting) before `PoolAcquireTimeoutError`. Always finite.',
  }),
  idleTimeoutMs: option({
    ...msOption(0),
    default: { development: 300_000, production: 300_000, test: 60_000 },
    perPreset: true,
    env: 'POOL_IDLE_TIMEOUT_MS',
    pgPoolName: { name: 'idleTimeoutMillis', scale: 1 },
    doc: 'An idle connection above `min` is closed after this long; `0`: never.',
  }),
  statementTimeoutMs: option({
    ...msOption(0),
    default: { development: 60_000, production: 60_000, test: 30_000 },
    perPreset: true,
    env: 'STATEMENT_TIMEOUT_MS',
    doc: 'Server-side `statement_timeout` of every connection; `0` disables.',
  }),
  maxUses: option({
    ...intOption(1),
    default: { development: 50_000, production: 50_000, test: 10_000 },
    perPreset: true,
    doc: 'A connection is closed after this many checkouts.',
  }),
  maxLifetimeMs: option({
    ...msOption(0),
    default: 1_800_000,
    pgPoolName: { name: 'maxLifetimeSeconds', scale: 1000 },
    doc: 'A connection is retired after this long (±2.5 % jitter per connection); `0` disables.',
  }),
  validateIdleAfterMs: option({
    ...msOption(0),
    default: 500,
    doc: 'A connection idle longer than this is checked (an empty query) before it is handed out; `0` checks always.',
  }),
  leakDetectionThresholdMs: option({
    type: `0 or ms ≥ ${MIN_LEAK_DETECTION_THRESHOLD_MS}`,
    min: 0,
    default: 0,
    doc:
      'Warn, with the acquiring stack, when a client lent to your code (`connect()`, `withClient`, a transaction) is held longer than this; ' +
      '`db.query` gives its connection back itself and is not watched. `0` is off.',
    check: (value: unknown, at: Field): number => {
      const given = ms(0)(value, at);
      if (given > 0 && given < MIN_LEAK_DETECTION_THRESHOLD_MS) at.fail(`0 (off) or an integer from ${MIN_LEAK_DETECTION_THRESHOLD_MS} and up`, value);
      return given;
    },
  }),
  keepAliveMs: option({
    ...msOption(0),
    default: { development: 10_000, production: 10_000, test: 10_000 },
    perPreset: true,
    pgPoolName: { name: 'keepAliveInitialDelayMillis', scale: 1 },
    doc: 'TCP keep-alive on sockets after this long idle; `0` turns it off.',
  }),
  connectTimeoutMs: option({
    ...msOption(1),
    default: { development: 5_000, production: 5_000, test: 5_000 },
    perPreset: true,
    doc: "How long opening one connection (TCP, TLS, startup, authentication) may take, within the caller's `acquireTimeoutMs`.",
  }),
  queryTimeoutMs: option({
    ...msOption(0),
    defaultDoc: '`statementTimeoutMs + 5000`',
    doc: 'Client-side deadline of a statement (past it the connection is destroyed); `0` disables; `0` by default when `statementTimeoutMs` is `0`.',
  }),
  validationTimeoutMs: option({
    ...msOption(1),
    default: { development: 5_000, production: 5_000, test: 2_000 },
    perPreset: true,
    doc: "Deadline of the library's own round trips on a connection (validation, `ROLLBACK` on release, probes).",
  }),
} as const;

export type PoolKey = keyof typeof POOL_SETTINGS;
export const POOL_KEYS = Object.keys(POOL_SETTINGS) as PoolKey[];

/** Options only a node (`primary`, `replicas[i]`) takes, next to `pg.PoolConfig`'s fields and the pool settings. */
export const NODE_OPTIONS = {
  name: option({
    type: 'string',
    defaultDoc: '`primary`, `replica-1`, `replica-2`, …',
    doc: 'Name shown in health, metrics and errors; unique within the database.',
    check: nonEmptyString,
  }),
  weight: option({
    type: 'number > 0',
    default: 1,
    doc: 'Relative share of reads for the `weighted` strategy.',
    check: (value: unknown, at: Field): number => {
      if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) at.fail('a number greater than 0', value);
      return value;
    },
  }),
  endpoint: option({
    type: 'boolean',
    default: false,
    doc: 'The entry is a load-balancer / VIP / DNS endpoint, not one server: it keeps its configured role.',
    check: bool,
  }),
} as const;
