import type { Option, Section } from './option.js';
import { DATABASE_OPTIONS } from './schema.database.js';
import { HEALTH_CHECK_OPTIONS, PING_CHECK_OPTIONS } from './schema.health.js';
import { ALERT_OPTIONS, LOAD_SIZING_OPTIONS, METRICS_OPTIONS } from './schema.metrics.js';
import { NODE_OPTIONS, POOL_KEYS, POOL_SETTINGS } from './schema.pool.js';
import { BREAKER_OPTIONS, FAILOVER_OPTIONS, MONITOR_OPTIONS, PREPARED_STATEMENT_OPTIONS, ROUTING_OPTIONS, SESSION_OPTIONS } from './schema.sections.js';

/** The sections of `PoolModule.forRoot()` options, by their key. */
export const SECTIONS = {
  routing: ROUTING_OPTIONS,
  breaker: BREAKER_OPTIONS,
  failover: FAILOVER_OPTIONS,
  monitor: MONITOR_OPTIONS,
  metrics: METRICS_OPTIONS,
  alerts: ALERT_OPTIONS,
  loadSizing: LOAD_SIZING_OPTIONS,
  preparedStatements: PREPARED_STATEMENT_OPTIONS,
  session: SESSION_OPTIONS,
} as const;

const LEAD = ['name', 'isGlobal', 'primary', 'replicas', 'preset'] as const;

/** Every top-level key `forRoot()` takes, in the order an "unknown option" error lists them. */
export const TOP_LEVEL_KEYS: readonly string[] = [
  ...LEAD,
  ...POOL_KEYS,
  ...Object.keys(DATABASE_OPTIONS).filter((k) => !(LEAD as readonly string[]).includes(k) && k !== 'env'),
  ...Object.keys(SECTIONS),
  'env',
];

/** A group of options as the docs show it: `label(key)` is how a row names the option. */
export interface SchemaGroup {
  readonly title: string;
  /** The row's name of an option: `` `routing.strategy` ``, `` node `weight` ``. */
  readonly label: (key: string) => string;
  readonly options: Section;
}

const plain = (prefix: string) => (key: string) => `\`${prefix}${key}\``;

/** Every option of `PoolModule.forRoot()`, declared once, grouped as the docs list them. */
export const MODULE_SCHEMA: readonly SchemaGroup[] = [
  { title: 'Pool settings (database-wide or per node)', label: plain(''), options: POOL_SETTINGS },
  { title: 'Node options (`primary` / `replicas[i]`)', label: (key) => `node \`${key}\``, options: NODE_OPTIONS },
  { title: 'Database options', label: plain(''), options: DATABASE_OPTIONS },
  ...Object.entries(SECTIONS).map(([name, options]) => ({ title: `\`${name}\``, label: plain(`${name}.`), options })),
];

/** The options of `PoolHealthIndicator`'s methods (validated by the same rules; documented with the indicator). */
export const HEALTH_SCHEMA: readonly SchemaGroup[] = [
  { title: '`PoolHealthIndicator.check()`', label: plain(''), options: HEALTH_CHECK_OPTIONS },
  { title: '`PoolHealthIndicator.pingCheck()`', label: plain(''), options: PING_CHECK_OPTIONS },
];

/** Every option of a group with the name a docs row gives it. */
export function schemaRows(groups: readonly SchemaGroup[]): Array<{ label: string; key: string; option: Option }> {
  return groups.flatMap((g) => Object.entries(g.options).map(([key, option]) => ({ label: g.label(key), key, option })));
}
