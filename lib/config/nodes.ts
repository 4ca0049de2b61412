import type { PoolConfig } from 'pg';
import type { NodeOptions, NodeRole } from '../pool.interfaces.js';
import type { ResetOnRelease } from './reset-modes.js';
import { bool, field, int, looksSecret, nonEmptyString, readOption, type Field } from './option.js';
import { translatePgPoolNames } from './pg-pool-names.js';
import { overridePoolValues, plainPoolValues, type Env, type PoolValues } from './pool-values.js';
import type { ResolvedPreparedStatements } from './prepared-statements.options.js';
import type { ResolvedNode } from './resolved.js';
import { NODE_OPTIONS, POOL_KEYS } from './schema.pool.js';
import { closest } from './suggest.js';
import { checkUrl, nodeAddress, splitMultiHostUrl } from './urls.js';

const OWN_KEYS = [...Object.keys(NODE_OPTIONS), ...POOL_KEYS];

/** The module's own keys and `pg.ClientConfig` / `pg.PoolConfig`'s (pg 8.x), for near-miss detection. */
const NODE_KEYS = new Set<string>([
  ...OWN_KEYS,
  'user', 'database', 'password', 'port', 'host', 'connectionString', 'keepAlive', 'stream', 'statement_timeout',
  'ssl', 'enableChannelBinding', 'sslnegotiation', 'query_timeout', 'lock_timeout', 'keepAliveInitialDelayMillis',
  'idle_in_transaction_session_timeout', 'application_name', 'fallback_application_name', 'connectionTimeoutMillis',
  'types', 'options', 'client_encoding', 'pipeline', 'binary', 'parseInt8', 'parseInputDatesAsUTC',
  'idleTimeoutMillis', 'log', 'Promise', 'allowExitOnIdle', 'maxLifetimeSeconds', 'Client', 'onConnect', 'verify',
]);

/**
 * A node accepts every `pg.PoolConfig` field, including ones newer `pg` versions add, so an
 * unknown key only fails when it is a near miss of a known one (`hots`, `connectionstring`).
 */
function checkNodeKeys(node: Record<string, unknown>, at: Field): void {
  for (const key of Object.keys(node)) {
    if (NODE_KEYS.has(key)) continue;
    const guess = closest(key, NODE_KEYS, false);
    if (guess !== undefined) {
      at.at(key).fail(`a pg.PoolConfig field or one of ${OWN_KEYS.join(', ')}`, node[key], `Did you mean \`${at.at(guess).path}\`?`, looksSecret(key, guess));
    }
  }
}

/** Startup parameters PgBouncer drops (`options`, `statement_timeout`, …) or refuses (`lock_timeout`, …). */
const PGBOUNCER_UNSUPPORTED_STARTUP = ['options', 'statement_timeout', 'lock_timeout', 'idle_in_transaction_session_timeout'] as const;

function checkPgBouncerNode(node: Record<string, unknown>, at: Field): void {
  for (const key of PGBOUNCER_UNSUPPORTED_STARTUP) {
    if (node[key] === undefined) continue;
    at.at(key).fail(
      'no value while pgbouncer is true (PgBouncer drops or refuses this startup parameter)',
      node[key],
      key === 'statement_timeout'
        ? 'Use statementTimeoutMs (applied with SET LOCAL in transactions) and ALTER ROLE … SET statement_timeout for plain queries.'
        : 'Set it per role (ALTER ROLE … SET) or per database on the server instead.',
    );
  }
}

function startupOptions(given: string | undefined, settings: Record<string, string | number>): string | undefined {
  const parts = Object.entries(settings).map(([k, v]) => `-c ${k}=${String(v).replace(/([\\ ])/g, '\\$1')}`);
  if (given) parts.unshift(given);
  return parts.length ? parts.join(' ') : undefined;
}

export function hide<T extends object>(target: T, key: string, value: unknown): void {
  Object.defineProperty(target, key, { value, enumerable: false, writable: false, configurable: false });
}

/** Settings every node of a database shares. */
export interface NodeCommon {
  applicationName: string;
  timezone: string;
  pgbouncer: boolean;
  resetOnRelease: ResetOnRelease;
  preparedStatements: ResolvedPreparedStatements;
}

/** Checks one node's connection fields (the rest is `pg`'s to judge). */
function checkConnection(node: NodeOptions, at: Field): void {
  if (node.connectionString !== undefined) checkUrl(at.at('connectionString'), node.connectionString);
  if (node.host !== undefined) nonEmptyString(node.host, at.at('host'));
  if (node.port !== undefined) int(1, 65535)(node.port, at.at('port'));
  if (node.user !== undefined) nonEmptyString(node.user, at.at('user'));
  if (node.database !== undefined) nonEmptyString(node.database, at.at('database'));
  if (node.password !== undefined && typeof node.password !== 'string' && typeof node.password !== 'function') {
    at.at('password').fail('a string or a function returning one', node.password, undefined, true);
  }
  if (node.ssl !== undefined && typeof node.ssl !== 'boolean' && (typeof node.ssl !== 'object' || node.ssl === null || Array.isArray(node.ssl))) {
    at.at('ssl').fail('true, false or a TLS options object such as { rejectUnauthorized: true, ca }', node.ssl);
  }
}

export function resolveNode(raw: unknown, role: NodeRole, index: number, path: string, database: string, defaults: PoolValues, common: NodeCommon, env: Env): ResolvedNode {
  const at = field(path);
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw) || Object.keys(raw).length === 0) {
    at.fail('a connection object such as { connectionString: "postgres://…" } or { host, port, user, database }', raw);
  }
  const node = translatePgPoolNames(raw as NodeOptions, at);
  checkConnection(node, at);
  const name = node.name === undefined ? (role === 'primary' ? 'primary' : `replica-${index + 1}`) : NODE_OPTIONS.name.check(node.name, at.at('name'));
  const weight = readOption(NODE_OPTIONS.weight, node.weight, at.at('weight'));
  const endpoint = node.endpoint === undefined ? false : bool(node.endpoint, at.at('endpoint'));
  checkNodeKeys(node as Record<string, unknown>, at);
  if (common.pgbouncer) checkPgBouncerNode(node as Record<string, unknown>, at);
  const pool = plainPoolValues(overridePoolValues(defaults, node as Record<string, unknown>, path));

  const pgFields: Record<string, unknown> = { ...node };
  for (const key of ['name', 'weight', 'endpoint', ...POOL_KEYS]) if (!['min', 'max', 'maxUses'].includes(key)) delete pgFields[key];
  const settings: Record<string, string | number> = {};
  if (!common.pgbouncer) {
    settings.statement_timeout = pool.statementTimeoutMs;
    settings.TimeZone = common.timezone;
    if (role === 'replica') settings.default_transaction_read_only = 'on';
  }
  const poolConfig: PoolConfig = {
    ...pgFields,
    application_name: (pgFields.application_name as string | undefined) ?? common.applicationName,
    min: pool.min,
    max: pool.max,
    idleTimeoutMillis: pool.idleTimeoutMs,
    connectionTimeoutMillis: pool.acquireTimeoutMs,
    maxUses: pool.maxUses,
    keepAlive: pool.keepAliveMs > 0 ? true : (pgFields.keepAlive as boolean | undefined),
    keepAliveInitialDelayMillis: pool.keepAliveMs > 0 ? pool.keepAliveMs : (pgFields.keepAliveInitialDelayMillis as number | undefined),
    options: startupOptions(pgFields.options as string | undefined, settings),
  };
  for (const key of Object.keys(poolConfig) as Array<keyof PoolConfig>) {
    if (poolConfig[key] === undefined) delete poolConfig[key];
  }

  const resolved = {
    database, name, role, index, weight, endpoint,
    address: nodeAddress(node, env),
    pgbouncer: common.pgbouncer,
    timezone: common.timezone,
    preparedStatements: common.preparedStatements,
    resetOnRelease: common.resetOnRelease,
    ...pool,
  } as ResolvedNode;
  hide(resolved, 'poolConfig', poolConfig);
  const otherSettings = { ...settings };
  if (role === 'replica') delete otherSettings.default_transaction_read_only;
  else if (!common.pgbouncer) otherSettings.default_transaction_read_only = 'on';
  const other = startupOptions(pgFields.options as string | undefined, otherSettings);
  hide(resolved, 'roleOptions', role === 'primary' ? { primary: poolConfig.options, replica: other } : { primary: other, replica: poolConfig.options });
  return resolved;
}

/**
 * The nodes `primary` names: one object, a list of them (`primary[0]` first), or one object whose
 * connectionString is a multi-host URL (one node per host, the object's other settings shared).
 */
export function primaryCandidates(raw: unknown, urlField: Field): unknown[] {
  if (Array.isArray(raw)) {
    if (raw.length === 0) field('primary').fail('a connection object or a non-empty list of them', raw);
    // A hole (`[ , {…}]`) becomes `undefined`, which the node check refuses with its index.
    return Array.from(raw as unknown[]);
  }
  const url = (raw as NodeOptions | null)?.connectionString;
  if (typeof url !== 'string') return [raw];
  const urls = splitMultiHostUrl(urlField, url);
  if (urls === undefined) return [raw];
  const { name, ...rest } = raw as NodeOptions;
  return urls.map((u, i) => ({ ...rest, connectionString: u, name: i === 0 ? name : name === undefined ? undefined : `${name}-${i + 1}` }));
}
