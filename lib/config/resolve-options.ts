import type { SessionOptions } from '../session/session-context.js';
import type { ResetOnRelease } from '../pool/session-reset.js';
import type { PoolConfig } from 'pg';
import { MAX_TIMER_MS, msRange } from './timer-limit.js';
import {
  DEFAULT_APPLICATION_NAME,
  DEFAULT_CONSISTENCY_HEADER,
  DEFAULT_DATABASE,
  MIN_LEAK_DETECTION_THRESHOLD_MS,
} from '../pool.constants.js';
import { PoolConfigurationError } from '../pool.exceptions.js';
import type {
  NodeOptions,
  NodeRole,
  PoolModuleOptions,
  PoolPreset,
  ReadConsistency,
  ReadOnlyInTransaction,
  ReplicaSelector,
  RoutingStrategy,
  ConnectContext,
} from '../pool.interfaces.js';
import type { PoolClient } from 'pg';
import { POOL_PRESETS, PRESET_NAMES } from './presets.js';
import { translatePgPoolNames } from './pg-pool-names.js';
import { describeValue, redactSecrets, redactUrl } from './redact.js';
import { resolveAlertOptions, resolveMetricsOptions, type ResolvedAlertOptions, type ResolvedMetricsOptions } from '../metrics/metrics.options.js';
import { resolveLoadSizingOptions, type ResolvedLoadSizingOptions } from '../metrics/sizing.options.js';
import { resolvePreparedStatements, type ResolvedPreparedStatements } from './prepared-statements.options.js';

export interface ResolvedNode {
  readonly database: string;
  readonly name: string;
  readonly role: NodeRole;
  readonly index: number;
  readonly weight: number;
  /** A load-balancer / VIP / DNS endpoint: its role is the configured one, checked on each new connection. */
  readonly endpoint: boolean;
  /** `host:port`, never with credentials. */
  readonly address: string;
  readonly min: number;
  readonly max: number;
  readonly acquireTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly statementTimeoutMs: number;
  readonly maxUses: number;
  readonly maxLifetimeMs: number;
  readonly validateIdleAfterMs: number;
  readonly leakDetectionThresholdMs: number;
  readonly keepAliveMs: number;
  readonly connectTimeoutMs: number;
  readonly queryTimeoutMs: number;
  readonly validationTimeoutMs: number;
  /** Behind PgBouncer in transaction mode: no startup `options`, no named statements, `SET LOCAL` in transactions. */
  readonly pgbouncer: boolean;
  /** Session time zone; in PgBouncer mode sent as the tracked `TimeZone` startup parameter. */
  readonly timezone: string;
  /** Automatic prepared statements of each connection. */
  readonly preparedStatements: ResolvedPreparedStatements;
  /** When a connection given back has its session state reset. */
  readonly resetOnRelease: ResetOnRelease;
  /**
   * What each `pg.Client` of this node's own pool is made from (a `pg.PoolConfig`: `Client` picks
   * the class; the sizing fields are read from the resolved options instead). Non-enumerable so
   * it never shows when logged.
   */
  readonly poolConfig: PoolConfig;
  /** Startup `options` per role, for a node a failover promotes or demotes. Non-enumerable. */
  readonly roleOptions?: Readonly<Record<NodeRole, string | undefined>>;
}

export interface ResolvedOptions {
  readonly database: string;
  readonly preset: PoolPreset;
  readonly primary: ResolvedNode;
  readonly replicas: readonly ResolvedNode[];
  readonly applicationName: string;
  readonly timezone: string;
  readonly onConnect?: (client: PoolClient, context: ConnectContext) => void | Promise<void>;
  readonly lazy: boolean;
  readonly retryAttempts: number;
  readonly retryDelayMs: number;
  readonly instances: number;
  readonly sizingAdvisor: boolean;
  readonly shutdownTimeoutMs: number;
  readonly slowQueryMs: number;
  readonly pgbouncer: boolean;
  readonly resetOnRelease: ResetOnRelease;
  readonly session: { readonly fromRequest?: SessionOptions['fromRequest']; readonly secret: readonly string[] };
  readonly routing: {
    readonly strategy: RoutingStrategy | ReplicaSelector;
    readonly fallbackToPrimary: boolean;
    readonly replicaBanMs: number;
    readonly maxReplicationLagMs: number;
    readonly maxReplicationLagBytes: number;
    readonly lagCheckIntervalMs: number;
    readonly consistency: ReadConsistency;
    readonly consistencyHeader: string;
    readonly readOnlyInTransaction: ReadOnlyInTransaction;
  };
  readonly breaker: { readonly failureThreshold: number; readonly resetTimeoutMs: number };
  readonly failover: {
    readonly discoverRoles: boolean;
    readonly checkIntervalMs: number;
    readonly checkTimeoutMs: number;
    readonly failoverTimeoutMs: number;
    readonly holdWritesMs: number;
  };
  readonly monitor: { readonly enabled: boolean; readonly intervalMs: number; readonly timeoutMs: number };
  readonly metrics: ResolvedMetricsOptions;
  readonly alerts: ResolvedAlertOptions;
  readonly loadSizing: ResolvedLoadSizingOptions;
  /** Secrets found in the configuration, used to scrub driver messages. */
  readonly secrets: readonly string[];
}

const TOP_LEVEL_KEYS = new Set([
  'name', 'isGlobal', 'primary', 'replicas', 'preset', 'min', 'max', 'acquireTimeoutMs', 'idleTimeoutMs',
  'statementTimeoutMs', 'maxUses', 'maxLifetimeMs', 'validateIdleAfterMs', 'leakDetectionThresholdMs',
  'keepAliveMs', 'connectTimeoutMs', 'queryTimeoutMs', 'validationTimeoutMs', 'applicationName', 'timezone', 'onConnect', 'lazy', 'retryAttempts', 'retryDelayMs',
  'instances', 'sizingAdvisor', 'shutdownTimeoutMs', 'slowQueryMs', 'routing', 'breaker', 'monitor', 'metrics',
  'alerts', 'failover', 'loadSizing', 'preparedStatements', 'pgbouncer', 'resetOnRelease', 'session', 'env',
]);
/**
 * A planned Patroni switchover leaves no primary for ~1.1 s (the old one shuts down before the
 * candidate is promoted); writes waited 1.4–2.5 s in `npm run chaos:patroni` on a loaded 2-CPU
 * host. 5 s is at least twice that and stays well below common HTTP client timeouts.
 */
export const DEFAULT_HOLD_WRITES_MS = 5000;
const FAILOVER_KEYS = new Set(['discoverRoles', 'checkIntervalMs', 'checkTimeoutMs', 'failoverTimeoutMs', 'holdWritesMs']);
const TARGET_SESSION_ATTRS = ['any', 'read-write', 'primary'];
const ROUTING_KEYS = new Set([
  'strategy', 'fallbackToPrimary', 'replicaBanMs', 'maxReplicationLagMs', 'maxReplicationLagBytes',
  'lagCheckIntervalMs', 'consistency', 'consistencyHeader', 'readOnlyInTransaction',
]);
const RESET_MODES: readonly ResetOnRelease[] = ['auto', 'always', 'never'];
const BREAKER_KEYS = new Set(['failureThreshold', 'resetTimeoutMs']);
const MONITOR_KEYS = new Set(['enabled', 'intervalMs', 'timeoutMs']);
const STRATEGIES: readonly RoutingStrategy[] = ['round-robin', 'random', 'weighted', 'least-busy'];
const NODE_POOL_KEYS = [
  'min', 'max', 'acquireTimeoutMs', 'idleTimeoutMs', 'statementTimeoutMs', 'maxUses', 'maxLifetimeMs',
  'validateIdleAfterMs', 'leakDetectionThresholdMs', 'keepAliveMs', 'connectTimeoutMs', 'queryTimeoutMs', 'validationTimeoutMs',
] as const;
const NODE_KEYS = new Set<string>([
  ...NODE_POOL_KEYS, 'name', 'weight', 'endpoint',
  // pg.ClientConfig / pg.PoolConfig (pg 8.x)
  'user', 'database', 'password', 'port', 'host', 'connectionString', 'keepAlive', 'stream', 'statement_timeout',
  'ssl', 'enableChannelBinding', 'sslnegotiation', 'query_timeout', 'lock_timeout', 'keepAliveInitialDelayMillis',
  'idle_in_transaction_session_timeout', 'application_name', 'fallback_application_name', 'connectionTimeoutMillis',
  'types', 'options', 'client_encoding', 'pipeline', 'binary', 'parseInt8', 'parseInputDatesAsUTC',
  'idleTimeoutMillis', 'log', 'Promise', 'allowExitOnIdle', 'maxLifetimeSeconds', 'Client', 'onConnect', 'verify',
]);

type Env = Record<string, string | undefined>;

const URL_ENCODING_HINT = 'Special characters in the user name or password must be percent-encoded (@ as %40, # as %23, / as %2F, : as %3A, space as %20).';

function fail(field: string, expected: string, value: unknown, hint?: string, secret = false): never {
  throw new PoolConfigurationError(field, expected, describeValue(value, secret), hint);
}

function optionField(path: string): string {
  return `option \`${path}\``;
}

function envField(name: string): string {
  return `environment variable \`${name}\``;
}

/** Optimal string alignment distance (a swap of two neighbours counts 1), case-insensitive. */
function editDistance(a: string, b: string): number {
  const x = a.toLowerCase();
  const y = b.toLowerCase();
  const d: number[][] = Array.from({ length: x.length + 1 }, (_, i) => [i, ...Array<number>(y.length).fill(0)]);
  for (let j = 1; j <= y.length; j++) d[0]![j] = j;
  for (let i = 1; i <= x.length; i++) {
    for (let j = 1; j <= y.length; j++) {
      const cost = x[i - 1] === y[j - 1] ? 0 : 1;
      let best = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && x[i - 1] === y[j - 2] && x[i - 2] === y[j - 1]) best = Math.min(best, d[i - 2]![j - 2]! + 1);
      d[i]![j] = best;
    }
  }
  return d[x.length]![y.length]!;
}

/** The known key a typo most likely meant: a close spelling, or (with `prefixes`) a longer/shorter form. */
function closest(key: string, known: Iterable<string>, prefixes = true): string | undefined {
  const lower = key.toLowerCase();
  let best: string | undefined;
  let bestDistance = key.length <= 4 ? 1 : 2;
  for (const k of known) {
    const distance = editDistance(key, k);
    if (distance <= bestDistance && (best === undefined || distance < bestDistance)) {
      best = k;
      bestDistance = distance;
    }
  }
  if (best !== undefined || !prefixes) return best;
  for (const k of known) {
    const kl = k.toLowerCase();
    if (lower.length >= 3 && (kl.startsWith(lower) || lower.startsWith(kl))) return k;
  }
  return undefined;
}

const SECRET_LOOKING_KEY = /pas+w|pwd|secret|token|credential|auth/i;

function looksSecret(key: string, guess: string | undefined): boolean {
  return SECRET_LOOKING_KEY.test(key) || guess === 'password';
}

function checkKeys(value: Record<string, unknown>, known: Set<string>, prefix: string): void {
  for (const key of Object.keys(value)) {
    if (!known.has(key)) {
      const guess = closest(key, known);
      fail(
        optionField(`${prefix}${key}`),
        `one of the known options (${[...known].join(', ')})`,
        value[key],
        guess ? `Did you mean \`${prefix}${guess}\`?` : undefined,
        looksSecret(key, guess),
      );
    }
  }
}

/**
 * A node accepts every `pg.PoolConfig` field, including ones newer `pg` versions add, so an
 * unknown key only fails when it is a near miss of a known one (`hots`, `connectionstring`).
 */
function checkNodeKeys(node: Record<string, unknown>, path: string): void {
  for (const key of Object.keys(node)) {
    if (NODE_KEYS.has(key)) continue;
    const guess = closest(key, NODE_KEYS, false);
    if (guess !== undefined) {
      fail(
        optionField(`${path}.${key}`),
        'a pg.PoolConfig field or one of name, weight, endpoint, min, max, acquireTimeoutMs, idleTimeoutMs, statementTimeoutMs, maxUses, maxLifetimeMs, validateIdleAfterMs, leakDetectionThresholdMs, keepAliveMs, connectTimeoutMs, queryTimeoutMs, validationTimeoutMs',
        node[key],
        `Did you mean \`${path}.${guess}\`?`,
        looksSecret(key, guess),
      );
    }
  }
}

function checkInt(field: string, value: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `an integer from ${min} and up` : max === MAX_TIMER_MS ? msRange(min) : `an integer from ${min} to ${max}`;
    fail(field, range, value);
  }
  return value;
}

/** A millisecond option: an integer from `min` up to the longest timer delay. */
function checkMs(field: string, value: unknown, min: number): number {
  return checkInt(field, value, min, MAX_TIMER_MS);
}

function checkBool(field: string, value: unknown): boolean {
  if (typeof value !== 'boolean') fail(field, 'true or false', value);
  return value;
}

function checkString(field: string, value: unknown, nonEmpty = true): string {
  if (typeof value !== 'string' || (nonEmpty && value.trim() === '')) fail(field, 'a non-empty string', value);
  return value;
}

function checkHeaderName(field: string, value: unknown): string {
  const name = checkString(field, value);
  if (!HEADER_TOKEN.test(name)) fail(field, "an HTTP header name (letters, digits and !#$%&'*+-.^_`|~, no spaces or colons)", value);
  return name;
}

function checkEnum<T extends string>(field: string, value: unknown, allowed: readonly T[]): T {
  if (typeof value !== 'string' || !allowed.includes(value as T)) {
    fail(field, `one of ${allowed.map((a) => `"${a}"`).join(', ')}`, value);
  }
  return value as T;
}

/** An options section (`routing`, `monitor`, …): absent means `{}`; anything but a plain object (null included) is refused. */
function checkSection<T extends object>(field: string, value: T | undefined): Partial<T> {
  if (value === undefined) return {};
  if (typeof value !== 'object' || value === null || Array.isArray(value)) fail(optionField(field), 'an object', value);
  return value;
}

/** An HTTP header name: an RFC 7230 token (letters, digits and !#$%&'*+-.^_`|~). */
const HEADER_TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * The identity a `forRoot*()` call registers under, checked before any provider exists: `name`
 * (the database's name, a non-empty string) and `isGlobal` (a boolean, default true).
 */
export function resolveModuleIdentity(options: { name?: unknown; isGlobal?: unknown } | null | undefined): { name: string; global: boolean } {
  const name = options?.name === undefined ? DEFAULT_DATABASE : checkString(optionField('name'), options.name);
  const global = options?.isGlobal === undefined ? true : checkBool(optionField('isGlobal'), options.isGlobal);
  return { name, global };
}

function pick<T>(explicit: T | undefined, fallback: T): T {
  return explicit === undefined ? fallback : explicit;
}

/** Environment variable prefix: `DB_` for the default database, `DB_<NAME>_` for a named one. */
export function envPrefix(database: string): string {
  return database === DEFAULT_DATABASE ? 'DB_' : `DB_${database.toUpperCase().replace(/[^A-Z0-9]+/g, '_')}_`;
}

function envInt(env: Env, name: string, min: number): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw === '') return undefined;
  if (!/^\s*\d+\s*$/.test(raw)) fail(envField(name), `an integer from ${min} and up`, raw);
  const value = Number(raw);
  if (value < min) fail(envField(name), `an integer from ${min} and up`, raw);
  return value;
}

function checkUrl(field: string, url: unknown): string {
  if (typeof url !== 'string' || url.trim() === '') {
    fail(field, 'a postgres:// or postgresql:// connection URL', url);
  }
  const hosts = splitMultiHostUrl(field, url);
  if (hosts !== undefined) {
    for (const one of hosts) checkUrl(field, one);
    return url;
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return fail(field, 'a postgres://user:password@host:port/database connection URL', url, URL_ENCODING_HINT);
  }
  if (parsed.hash !== '' || parsed.pathname.includes('@')) {
    fail(field, 'a postgres://user:password@host:port/database connection URL with one @ before the host', url, URL_ENCODING_HINT);
  }
  if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') {
    fail(field, 'a URL starting with postgres:// or postgresql://', url);
  }
  if (!parsed.hostname && !parsed.searchParams.get('host')) {
    fail(field, 'a connection URL with a host', url);
  }
  if (parsed.port && !/^\d+$/.test(parsed.port)) fail(field, 'a connection URL with a numeric port', url);
  return url;
}

/**
 * A libpq multi-host URL (`postgres://u@h1:5432,h2,h3:5433/db?target_session_attrs=read-write`)
 * as one URL per host; `undefined` for a URL with one host. `target_session_attrs` is checked and
 * dropped: the writes go to whichever host answers as the primary.
 */
export function splitMultiHostUrl(field: string, url: string): string[] | undefined {
  const m = /^(postgres(?:ql)?:\/\/)([^@/?#]*@)?([^/?#]*)(.*)$/s.exec(url);
  if (m === null || !m[3]!.includes(',')) return undefined;
  const [, scheme, userinfo = '', hostList, rest] = m as unknown as [string, string, string | undefined, string, string];
  const q = rest.indexOf('?');
  const path = q === -1 ? rest : rest.slice(0, q);
  const params = new URLSearchParams(q === -1 ? '' : rest.slice(q + 1));
  const attrs = params.get('target_session_attrs');
  if (attrs !== null && !TARGET_SESSION_ATTRS.includes(attrs)) {
    fail(field, `target_session_attrs ${TARGET_SESSION_ATTRS.map((a) => `"${a}"`).join(', ')} (the primary takes the writes; replicas are listed in replicas)`, attrs);
  }
  params.delete('target_session_attrs');
  const query = params.toString();
  return hostList.split(',').map((host, i) => {
    if (!/^(\[[0-9a-fA-F:.]+\]|[^\s:[\]]+)(:\d{1,5})?$/.test(host)) {
      fail(field, `host ${i + 1} of the multi-host URL as host or host:port`, host === '' ? '(empty)' : host);
    }
    return `${scheme}${userinfo}${host}${path}${query ? `?${query}` : ''}`;
  });
}

function nodeAddress(node: NodeOptions, env: Env): string {
  if (node.connectionString) {
    const u = new URL(node.connectionString);
    const host = u.hostname || u.searchParams.get('host') || 'localhost';
    return `${host}:${u.port || '5432'}`;
  }
  return `${node.host ?? env.PGHOST ?? 'localhost'}:${node.port ?? env.PGPORT ?? 5432}`;
}

function passwordOf(node: NodeOptions): string | undefined {
  if (typeof node.password === 'string') return node.password;
  if (node.connectionString) {
    try {
      const p = new URL(node.connectionString).password;
      return p ? decodeURIComponent(p) : undefined;
    } catch {
      return undefined;
    }
  }
  return undefined;
}

function startupOptions(
  given: string | undefined,
  settings: Record<string, string | number>,
): string | undefined {
  const parts = Object.entries(settings).map(([k, v]) => `-c ${k}=${String(v).replace(/([\\ ])/g, '\\$1')}`);
  if (given) parts.unshift(given);
  return parts.length ? parts.join(' ') : undefined;
}

function hide<T extends object>(target: T, key: string, value: unknown): void {
  Object.defineProperty(target, key, { value, enumerable: false, writable: false, configurable: false });
}

function resolveNode(
  raw: unknown,
  role: NodeRole,
  index: number,
  path: string,
  database: string,
  defaults: PoolValues,
  common: { applicationName: string; timezone: string; pgbouncer: boolean; resetOnRelease: ResetOnRelease; preparedStatements: ResolvedPreparedStatements },
  env: Env,
): ResolvedNode {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw) || Object.keys(raw).length === 0) {
    fail(
      optionField(path),
      'a connection object such as { connectionString: "postgres://…" } or { host, port, user, database }',
      raw,
    );
  }
  const node = translatePgPoolNames(raw as NodeOptions, path);
  if (node.connectionString !== undefined) checkUrl(optionField(`${path}.connectionString`), node.connectionString);
  if (node.host !== undefined) checkString(optionField(`${path}.host`), node.host);
  if (node.port !== undefined) checkInt(optionField(`${path}.port`), node.port, 1, 65535);
  if (node.user !== undefined) checkString(optionField(`${path}.user`), node.user);
  if (node.database !== undefined) checkString(optionField(`${path}.database`), node.database);
  if (node.password !== undefined && typeof node.password !== 'string' && typeof node.password !== 'function') {
    fail(optionField(`${path}.password`), 'a string or a function returning one', node.password, undefined, true);
  }
  if (node.ssl !== undefined && typeof node.ssl !== 'boolean' && (typeof node.ssl !== 'object' || node.ssl === null || Array.isArray(node.ssl))) {
    fail(optionField(`${path}.ssl`), 'true, false or a TLS options object such as { rejectUnauthorized: true, ca }', node.ssl);
  }
  const name = node.name === undefined ? (role === 'primary' ? 'primary' : `replica-${index + 1}`) : checkString(optionField(`${path}.name`), node.name);
  const weight = node.weight === undefined ? 1 : node.weight;
  if (typeof weight !== 'number' || !Number.isFinite(weight) || weight <= 0) {
    fail(optionField(`${path}.weight`), 'a number greater than 0', weight);
  }

  const endpoint = node.endpoint === undefined ? false : checkBool(optionField(`${path}.endpoint`), node.endpoint);
  checkNodeKeys(node as Record<string, unknown>, path);
  if (common.pgbouncer) checkPgBouncerNode(node as Record<string, unknown>, path);
  const values = overridePoolValues(defaults, node as Record<string, unknown>, path);

  const {
    name: _name, weight: _weight, endpoint: _endpoint, acquireTimeoutMs: _a, idleTimeoutMs: _i, statementTimeoutMs: _s,
    maxLifetimeMs: _l, validateIdleAfterMs: _v, leakDetectionThresholdMs: _k, keepAliveMs: _ka,
    connectTimeoutMs: _ct, queryTimeoutMs: _qt, validationTimeoutMs: _vt,
    ...pgFields
  } = node as NodeOptions & Record<string, unknown>;
  const pool = plainPoolValues(values);
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
    keepAlive: pool.keepAliveMs > 0 ? true : pgFields.keepAlive,
    keepAliveInitialDelayMillis: pool.keepAliveMs > 0 ? pool.keepAliveMs : pgFields.keepAliveInitialDelayMillis,
    options: startupOptions(pgFields.options as string | undefined, settings),
  };
  for (const key of Object.keys(poolConfig) as Array<keyof PoolConfig>) {
    if (poolConfig[key] === undefined) delete poolConfig[key];
  }

  const resolved = {
    database,
    name,
    role,
    index,
    weight,
    endpoint,
    address: nodeAddress(node, env),
    pgbouncer: common.pgbouncer,
    timezone: common.timezone,
    preparedStatements: common.preparedStatements,
    resetOnRelease: common.resetOnRelease,
    ...plainPoolValues(values),
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
function primaryCandidates(raw: unknown, urlField: string): unknown[] {
  if (Array.isArray(raw)) {
    if (raw.length === 0) fail(optionField('primary'), 'a connection object or a non-empty list of them', raw);
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

/** Startup parameters PgBouncer drops (`options`, `statement_timeout`, …) or refuses (`lock_timeout`, …). */
const PGBOUNCER_UNSUPPORTED_STARTUP = ['options', 'statement_timeout', 'lock_timeout', 'idle_in_transaction_session_timeout'] as const;

function checkPgBouncerNode(node: Record<string, unknown>, path: string): void {
  for (const key of PGBOUNCER_UNSUPPORTED_STARTUP) {
    if (node[key] === undefined) continue;
    fail(
      optionField(`${path}.${key}`),
      'no value while pgbouncer is true (PgBouncer drops or refuses this startup parameter)',
      node[key],
      key === 'statement_timeout'
        ? 'Use statementTimeoutMs (applied with SET LOCAL in transactions) and ALTER ROLE … SET statement_timeout for plain queries.'
        : 'Set it per role (ALTER ROLE … SET) or per database on the server instead.',
    );
  }
}

type PoolKey = (typeof NODE_POOL_KEYS)[number];

/** One pool setting and where it came from, so an error names the field the user wrote. */
interface PoolValue {
  value: number;
  /** The field that set it (`option \`max\``, `environment variable \`DB_POOL_MAX_SIZE\``), or a preset. */
  field: string;
  /** The value as the user wrote it (an environment variable's raw text). */
  given: unknown;
  /** Set by an environment variable: wins over node-level options too. */
  fromEnv: boolean;
  /** Came from the preset or a built-in default, not from the user. */
  implicit: boolean;
}

type PoolValues = Record<PoolKey, PoolValue>;

const POOL_ENV_SUFFIX: Partial<Record<PoolKey, string>> = {
  min: 'POOL_MIN_SIZE',
  max: 'POOL_MAX_SIZE',
  acquireTimeoutMs: 'POOL_ACQUIRE_TIMEOUT_MS',
  idleTimeoutMs: 'POOL_IDLE_TIMEOUT_MS',
  statementTimeoutMs: 'STATEMENT_TIMEOUT_MS',
};

const POOL_MINIMUM: Record<PoolKey, number> = {
  min: 0,
  max: 1,
  acquireTimeoutMs: 1,
  idleTimeoutMs: 0,
  statementTimeoutMs: 0,
  maxUses: 1,
  maxLifetimeMs: 0,
  validateIdleAfterMs: 0,
  leakDetectionThresholdMs: 0,
  keepAliveMs: 0,
  connectTimeoutMs: 1,
  queryTimeoutMs: 0,
  validationTimeoutMs: 1,
};

function checkPoolValue(key: PoolKey, v: PoolValue): void {
  if (v.implicit) return;
  const min = POOL_MINIMUM[key];
  const max = key.endsWith('Ms') ? MAX_TIMER_MS : Number.MAX_SAFE_INTEGER;
  const valid = typeof v.value === 'number' && Number.isInteger(v.value) && v.value >= min && v.value <= max;
  if (!valid) fail(v.field, max === MAX_TIMER_MS ? msRange(min) : `an integer from ${min} and up`, v.given);
  if (key === 'leakDetectionThresholdMs' && v.value > 0 && v.value < MIN_LEAK_DETECTION_THRESHOLD_MS) {
    fail(v.field, `0 (off) or an integer from ${MIN_LEAK_DETECTION_THRESHOLD_MS} and up`, v.given);
  }
}

/** `min` must not exceed `max`; a preset's `min` quietly follows a smaller `max` the user chose. */
function reconcileMinMax(values: PoolValues): void {
  const { min, max } = values;
  if (min.value <= max.value) return;
  if (min.implicit) {
    values.min = { ...min, value: max.value };
    return;
  }
  const origin = max.implicit ? max.field : `set by ${max.field}`;
  fail(min.field, `an integer from 0 to the pool's max, ${max.value} (${origin})`, min.given);
}

/** Database-wide values: preset < explicit option < `DB_*` environment variable. */
function basePoolValues(input: PoolModuleOptions, preset: PoolPreset, env: Env, prefix: string): PoolValues {
  const builtIn: Record<PoolKey, number> = {
    ...POOL_PRESETS[preset],
    maxLifetimeMs: 1_800_000,
    validateIdleAfterMs: 500,
    leakDetectionThresholdMs: 0,
    // Derived from statementTimeoutMs in plainPoolValues.
    queryTimeoutMs: -1,
  };
  const values = {} as PoolValues;
  for (const key of NODE_POOL_KEYS) {
    const suffix = POOL_ENV_SUFFIX[key];
    const envName = suffix === undefined ? undefined : `${prefix}${suffix}`;
    const fromEnv = envName === undefined ? undefined : envInt(env, envName, POOL_MINIMUM[key]);
    const explicit = (input as Record<string, unknown>)[key];
    if (fromEnv !== undefined) {
      values[key] = { value: fromEnv, field: envField(envName!), given: env[envName!], fromEnv: true, implicit: false };
    } else if (explicit !== undefined) {
      values[key] = { value: explicit as number, field: optionField(key), given: explicit, fromEnv: false, implicit: false };
    } else {
      const source = key in POOL_PRESETS[preset] ? `the ${preset} preset` : 'the default';
      values[key] = { value: builtIn[key], field: source, given: builtIn[key], fromEnv: false, implicit: true };
    }
    checkPoolValue(key, values[key]);
  }
  return values;
}

/** A node's own values win over the database-wide ones, except over `DB_*` environment variables. */
function overridePoolValues(base: PoolValues, node: Record<string, unknown>, path: string): PoolValues {
  const values = { ...base };
  for (const key of NODE_POOL_KEYS) {
    const explicit = node[key];
    if (explicit === undefined) continue;
    const own: PoolValue = { value: explicit as number, field: optionField(`${path}.${key}`), given: explicit, fromEnv: false, implicit: false };
    checkPoolValue(key, own);
    if (!base[key].fromEnv) values[key] = own;
  }
  reconcileMinMax(values);
  return values;
}

function plainPoolValues(values: PoolValues): Record<PoolKey, number> {
  const out = {} as Record<PoolKey, number>;
  for (const key of NODE_POOL_KEYS) out[key] = values[key].value;
  // The client-side deadline sits past the server's own statement_timeout, so the server's fires first.
  if (out.queryTimeoutMs === -1) out.queryTimeoutMs = out.statementTimeoutMs > 0 ? out.statementTimeoutMs + QUERY_DEADLINE_GRACE_MS : 0;
  return out;
}

/** How far past `statementTimeoutMs` the default client-side statement deadline (`queryTimeoutMs`) lies. */
export const QUERY_DEADLINE_GRACE_MS = 5000;

function resolvePreset(options: PoolModuleOptions, env: Env): PoolPreset {
  if (options.preset !== undefined) return checkEnum(optionField('preset'), options.preset, PRESET_NAMES);
  if (env.DB_ENV !== undefined && env.DB_ENV !== '') return checkEnum(envField('DB_ENV'), env.DB_ENV, PRESET_NAMES);
  const nodeEnv = env.NODE_ENV;
  return nodeEnv && (PRESET_NAMES as string[]).includes(nodeEnv) ? (nodeEnv as PoolPreset) : 'development';
}

function envReplicaList(env: Env, name: string): NodeOptions[] | undefined {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return undefined;
  return raw.split(',').map((url, i) => {
    const trimmed = url.trim();
    if (trimmed === '') {
      const shown = `${JSON.stringify(raw.split(',').map((entry) => redactUrl(entry)).join(','))} (string)`;
      throw new PoolConfigurationError(envField(name), 'a comma-separated list of connection URLs with no empty entry', shown, `Entry ${i + 1} is empty.`);
    }
    checkUrl(`${envField(name)} entry ${i + 1}`, trimmed);
    return { connectionString: trimmed };
  });
}

/**
 * A node from `DB_PRIMARY_URL` or a `DB_REPLICA_URLS` entry: the URL replaces the connection
 * fields given in code (connectionString, host, port, user, password, database); every other
 * field of the node in code at the same position is kept (name, weight, pool settings, `ssl`,
 * `options`, ...). TLS parameters in the URL (sslmode, sslrootcert, sslcert, sslkey) then take
 * precedence over `ssl` from code, as pg applies them.
 */
function withEnvUrl(given: unknown, url: string): NodeOptions {
  const node = given !== null && typeof given === 'object' && !Array.isArray(given) ? (given as NodeOptions) : {};
  const { connectionString: _c, host: _h, port: _p, user: _u, password: _pw, database: _d, ...rest } = node;
  return { ...rest, connectionString: url };
}

/**
 * Merges preset < explicit options < `DB_*` environment overrides, validates everything and
 * returns the settings each pool is built from. Throws one `PoolConfigurationError` on the
 * first invalid value.
 */
export function resolveOptions(input: PoolModuleOptions & { name?: string; isGlobal?: boolean }, databaseName?: string): ResolvedOptions {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    fail('PoolModule options', 'an object', input);
  }
  checkKeys(input as Record<string, unknown>, TOP_LEVEL_KEYS, '');
  const database = databaseName ?? resolveModuleIdentity(input).name;
  if (input.isGlobal !== undefined) checkBool(optionField('isGlobal'), input.isGlobal);
  if (input.env !== undefined && (typeof input.env !== 'object' || input.env === null || Array.isArray(input.env))) {
    fail(optionField('env'), 'an object of environment variables such as process.env', input.env);
  }
  const env: Env = input.env ?? process.env;
  const prefix = envPrefix(database);
  const preset = resolvePreset(input, env);

  const pgbouncer = input.pgbouncer === undefined ? false : checkBool(optionField('pgbouncer'), input.pgbouncer);
  const applicationName = input.applicationName === undefined ? DEFAULT_APPLICATION_NAME : checkString(optionField('applicationName'), input.applicationName);
  if (Buffer.byteLength(applicationName) > 63) fail(optionField('applicationName'), 'at most 63 bytes', applicationName);
  const timezone = input.timezone === undefined ? 'UTC' : checkString(optionField('timezone'), input.timezone);

  const defaults = basePoolValues(input, preset, env, prefix);

  const envEnv = (k: string) => env[`${prefix}${k}`];
  let primaryRaw: unknown = input.primary;
  const primaryUrl = envEnv('PRIMARY_URL');
  if (primaryUrl !== undefined && primaryUrl !== '') {
    checkUrl(envField(`${prefix}PRIMARY_URL`), primaryUrl);
    primaryRaw = withEnvUrl(input.primary, primaryUrl);
  }
  if (primaryRaw === undefined) {
    fail(optionField('primary'), `a connection object, or the ${prefix}PRIMARY_URL environment variable`, undefined);
  }
  const candidates = primaryCandidates(primaryRaw, primaryUrl !== undefined && primaryUrl !== '' ? envField(`${prefix}PRIMARY_URL`) : optionField('primary.connectionString'));

  let replicasRaw: unknown = input.replicas ?? [];
  const envReplicas = envReplicaList(env, `${prefix}REPLICA_URLS`);
  if (envReplicas) {
    const given: unknown[] = Array.isArray(input.replicas) ? input.replicas : [];
    replicasRaw = envReplicas.map((r, i) => withEnvUrl(given[i], r.connectionString!));
  }
  if (!Array.isArray(replicasRaw)) fail(optionField('replicas'), 'an array of connection objects', replicasRaw);

  const resetOnRelease = checkEnum(optionField('resetOnRelease'), pick<string>(input.resetOnRelease, 'auto'), RESET_MODES);
  const preparedStatements = resolvePreparedStatements(input.preparedStatements, pgbouncer);
  const common = { applicationName, timezone, pgbouncer, resetOnRelease, preparedStatements };
  const primary = resolveNode(candidates[0], 'primary', 0, candidates.length > 1 ? 'primary[0]' : 'primary', database, defaults, common, env);
  // Array.from: a hole (`[ , {…}]`) becomes `undefined`, which the node check refuses with its index.
  const replicas = Array.from(replicasRaw as unknown[]).map((r, i) =>
    resolveNode(r, 'replica', i, `replicas[${i}]`, database, defaults, common, env),
  );
  const given = replicas.length;
  candidates.slice(1).forEach((c, i) => {
    const named = c !== null && typeof c === 'object' && !Array.isArray(c) ? { ...(c as NodeOptions), name: (c as NodeOptions).name ?? `${primary.name}-${i + 2}` } : c;
    replicas.push(resolveNode(named, 'replica', given + i, `primary[${i + 1}]`, database, defaults, common, env));
  });
  const seen = new Set<string>();
  for (const n of [primary, ...replicas]) {
    if (seen.has(n.name)) fail(optionField(n.role === 'primary' ? 'primary.name' : n.index < given ? `replicas[${n.index}].name` : `primary[${n.index - given + 1}].name`), 'a name no other node of this database uses', n.name);
    seen.add(n.name);
  }

  const routingIn = checkSection('routing', input.routing);
  checkKeys(routingIn as Record<string, unknown>, ROUTING_KEYS, 'routing.');
  const strategy = routingIn.strategy ?? 'round-robin';
  if (typeof strategy !== 'function') checkEnum(optionField('routing.strategy'), strategy, STRATEGIES);
  const routing = {
    strategy,
    fallbackToPrimary: routingIn.fallbackToPrimary === undefined ? true : checkBool(optionField('routing.fallbackToPrimary'), routingIn.fallbackToPrimary),
    replicaBanMs: checkMs(optionField('routing.replicaBanMs'), pick(routingIn.replicaBanMs, 30_000), 0),
    maxReplicationLagMs: checkMs(optionField('routing.maxReplicationLagMs'), pick(routingIn.maxReplicationLagMs, 10_000), 0),
    maxReplicationLagBytes: checkInt(optionField('routing.maxReplicationLagBytes'), pick(routingIn.maxReplicationLagBytes, 0), 0),
    lagCheckIntervalMs: checkMs(optionField('routing.lagCheckIntervalMs'), pick(routingIn.lagCheckIntervalMs, 1000), 50),
    consistency: checkEnum(optionField('routing.consistency'), pick<string>(routingIn.consistency, 'read-your-writes'), ['read-your-writes', 'eventual'] as const),
    consistencyHeader: checkHeaderName(optionField('routing.consistencyHeader'), pick(routingIn.consistencyHeader, DEFAULT_CONSISTENCY_HEADER)).toLowerCase(),
    readOnlyInTransaction: checkEnum(optionField('routing.readOnlyInTransaction'), pick<string>(routingIn.readOnlyInTransaction, 'join'), ['join', 'warn', 'throw'] as const),
  };

  const breakerIn = checkSection('breaker', input.breaker);
  checkKeys(breakerIn as Record<string, unknown>, BREAKER_KEYS, 'breaker.');
  const breaker = {
    failureThreshold: checkInt(optionField('breaker.failureThreshold'), pick(breakerIn.failureThreshold, 5), 1),
    resetTimeoutMs: checkMs(optionField('breaker.resetTimeoutMs'), pick(breakerIn.resetTimeoutMs, 10_000), 1),
  };
  const failoverIn = checkSection('failover', input.failover);
  checkKeys(failoverIn as Record<string, unknown>, FAILOVER_KEYS, 'failover.');
  const failover = {
    discoverRoles: failoverIn.discoverRoles === undefined ? true : checkBool(optionField('failover.discoverRoles'), failoverIn.discoverRoles),
    checkIntervalMs: checkMs(optionField('failover.checkIntervalMs'), pick(failoverIn.checkIntervalMs, 1000), 50),
    checkTimeoutMs: checkMs(optionField('failover.checkTimeoutMs'), pick(failoverIn.checkTimeoutMs, 1000), 50),
    failoverTimeoutMs: checkMs(optionField('failover.failoverTimeoutMs'), pick(failoverIn.failoverTimeoutMs, 30_000), 0),
    holdWritesMs: checkMs(optionField('failover.holdWritesMs'), pick(failoverIn.holdWritesMs, DEFAULT_HOLD_WRITES_MS), 0),
  };
  if (!failover.discoverRoles && candidates.length > 1) {
    fail(optionField('failover.discoverRoles'), 'true (or one host in primary): with pinned roles only the first host could ever take writes', false);
  }
  const monitorIn = checkSection('monitor', input.monitor);
  checkKeys(monitorIn as Record<string, unknown>, MONITOR_KEYS, 'monitor.');
  if (monitorIn.enabled !== undefined && typeof monitorIn.enabled !== 'boolean') fail(optionField('monitor.enabled'), 'true or false', monitorIn.enabled);
  const monitor = {
    enabled: monitorIn.enabled ?? true,
    intervalMs: checkMs(optionField('monitor.intervalMs'), pick(monitorIn.intervalMs, 250), 10),
    timeoutMs: checkMs(optionField('monitor.timeoutMs'), pick(monitorIn.timeoutMs, 500), 10),
  };
  const metrics = resolveMetricsOptions(input.metrics);
  const alerts = resolveAlertOptions(input.alerts);
  const loadSizing = resolveLoadSizingOptions(input.loadSizing);

  if (input.onConnect !== undefined && typeof input.onConnect !== 'function') {
    fail(optionField('onConnect'), 'a function (client, { database, pool, role }) => void | Promise<void>', input.onConnect);
  }
  const instancesEnv = envInt(env, 'APP_INSTANCES', 1);
  const secrets = [...candidates, ...(replicasRaw as unknown[])]
    .map((n) => passwordOf(n as NodeOptions))
    .filter((p): p is string => !!p);

  const resolved: ResolvedOptions = {
    database,
    preset,
    primary,
    replicas,
    applicationName,
    timezone,
    onConnect: input.onConnect,
    lazy: input.lazy === undefined ? false : checkBool(optionField('lazy'), input.lazy),
    retryAttempts: checkInt(optionField('retryAttempts'), pick(input.retryAttempts, 5), 1),
    retryDelayMs: checkMs(optionField('retryDelayMs'), pick(input.retryDelayMs, 500), 0),
    instances: checkInt(optionField('instances'), pick(input.instances, instancesEnv ?? 1), 1),
    sizingAdvisor: input.sizingAdvisor === undefined ? true : checkBool(optionField('sizingAdvisor'), input.sizingAdvisor),
    shutdownTimeoutMs: checkMs(optionField('shutdownTimeoutMs'), pick(input.shutdownTimeoutMs, 10_000), 0),
    slowQueryMs: checkMs(optionField('slowQueryMs'), pick(input.slowQueryMs, 1000), 0),
    pgbouncer,
    resetOnRelease,
    session: resolveSession(input.session),
    routing,
    breaker,
    failover,
    monitor,
    metrics,
    alerts,
    loadSizing,
    secrets: [],
  };
  hide(resolved, 'secrets', secrets);
  return resolved;
}

const SESSION_KEYS = new Set(['fromRequest', 'secret']);

function resolveSession(input: SessionOptions | undefined): ResolvedOptions['session'] {
  if (input === undefined) return { secret: [] };
  if (input === null || typeof input !== 'object' || Array.isArray(input)) fail(optionField('session'), 'an object { fromRequest?, secret? }', input);
  checkKeys(input as Record<string, unknown>, SESSION_KEYS, 'session.');
  if (input.fromRequest !== undefined && typeof input.fromRequest !== 'function') {
    fail(optionField('session.fromRequest'), 'a function (request) => ({ role?, settings? }) | undefined', input.fromRequest);
  }
  const secret = input.secret ?? [];
  if (!Array.isArray(secret) || secret.some((name) => typeof name !== 'string')) fail(optionField('session.secret'), 'an array of setting names', secret);
  return { fromRequest: input.fromRequest, secret: [...secret] };
}

export { redactSecrets };
