import type { PoolConfig } from 'pg';
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
import { describeValue, redactSecrets } from './redact.js';

export interface ResolvedNode {
  readonly database: string;
  readonly name: string;
  readonly role: NodeRole;
  readonly index: number;
  readonly weight: number;
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
  /** The config handed to `new pg.Pool()`. Non-enumerable so it never shows when logged. */
  readonly poolConfig: PoolConfig;
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
  readonly metrics: { readonly enabled: boolean; readonly prometheusPath: string; readonly jsonPath: string };
  /** Secrets found in the configuration, used to scrub driver messages. */
  readonly secrets: readonly string[];
}

const TOP_LEVEL_KEYS = new Set([
  'name', 'isGlobal', 'primary', 'replicas', 'preset', 'min', 'max', 'acquireTimeoutMs', 'idleTimeoutMs',
  'statementTimeoutMs', 'maxUses', 'maxLifetimeMs', 'validateIdleAfterMs', 'leakDetectionThresholdMs',
  'keepAliveMs', 'applicationName', 'timezone', 'onConnect', 'lazy', 'retryAttempts', 'retryDelayMs',
  'instances', 'sizingAdvisor', 'shutdownTimeoutMs', 'slowQueryMs', 'routing', 'breaker', 'metrics',
  'pgbouncer', 'env',
]);
const ROUTING_KEYS = new Set([
  'strategy', 'fallbackToPrimary', 'replicaBanMs', 'maxReplicationLagMs', 'maxReplicationLagBytes',
  'lagCheckIntervalMs', 'consistency', 'consistencyHeader', 'readOnlyInTransaction',
]);
const BREAKER_KEYS = new Set(['failureThreshold', 'resetTimeoutMs']);
const METRICS_KEYS = new Set(['enabled', 'prometheusPath', 'jsonPath']);
const STRATEGIES: readonly RoutingStrategy[] = ['round-robin', 'random', 'weighted', 'least-busy'];
const NODE_POOL_KEYS = [
  'min', 'max', 'acquireTimeoutMs', 'idleTimeoutMs', 'statementTimeoutMs', 'maxUses', 'maxLifetimeMs',
  'validateIdleAfterMs', 'leakDetectionThresholdMs', 'keepAliveMs',
] as const;

type Env = Record<string, string | undefined>;

function fail(field: string, expected: string, value: unknown, hint?: string, secret = false): never {
  throw new PoolConfigurationError(field, expected, describeValue(value, secret), hint);
}

function optionField(path: string): string {
  return `option \`${path}\``;
}

function envField(name: string): string {
  return `environment variable \`${name}\``;
}

function closest(key: string, known: Iterable<string>): string | undefined {
  const lower = key.toLowerCase();
  for (const k of known) {
    const kl = k.toLowerCase();
    if (kl === lower || kl.startsWith(lower) || lower.startsWith(kl) || kl === `${lower}s` || `${kl}s` === lower) return k;
  }
  return undefined;
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
      );
    }
  }
}

function checkInt(field: string, value: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `an integer from ${min} and up` : `an integer from ${min} to ${max}`;
    fail(field, range, value);
  }
  return value;
}

function checkBool(field: string, value: unknown): boolean {
  if (typeof value !== 'boolean') fail(field, 'true or false', value);
  return value;
}

function checkString(field: string, value: unknown, nonEmpty = true): string {
  if (typeof value !== 'string' || (nonEmpty && value.trim() === '')) fail(field, 'a non-empty string', value);
  return value;
}

function checkEnum<T extends string>(field: string, value: unknown, allowed: readonly T[]): T {
  if (typeof value !== 'string' || !allowed.includes(value as T)) {
    fail(field, `one of ${allowed.map((a) => `"${a}"`).join(', ')}`, value);
  }
  return value as T;
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
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return fail(field, 'a postgres://user:password@host:port/database connection URL', url);
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
  defaults: Record<(typeof NODE_POOL_KEYS)[number], number>,
  common: { applicationName: string; timezone: string; pgbouncer: boolean },
  env: Env,
): ResolvedNode {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw) || Object.keys(raw).length === 0) {
    fail(
      optionField(path),
      'a connection object such as { connectionString: "postgres://…" } or { host, port, user, database }',
      raw,
    );
  }
  const node = raw as NodeOptions;
  if (node.connectionString !== undefined) checkUrl(optionField(`${path}.connectionString`), node.connectionString);
  if (node.host !== undefined) checkString(optionField(`${path}.host`), node.host);
  if (node.port !== undefined) checkInt(optionField(`${path}.port`), node.port, 1, 65535);
  if (node.user !== undefined) checkString(optionField(`${path}.user`), node.user);
  if (node.database !== undefined) checkString(optionField(`${path}.database`), node.database);
  if (node.password !== undefined && typeof node.password !== 'string' && typeof node.password !== 'function') {
    fail(optionField(`${path}.password`), 'a string or a function returning one', node.password, undefined, true);
  }
  const name = node.name === undefined ? (role === 'primary' ? 'primary' : `replica-${index + 1}`) : checkString(optionField(`${path}.name`), node.name);
  const weight = node.weight === undefined ? 1 : node.weight;
  if (typeof weight !== 'number' || !Number.isFinite(weight) || weight <= 0) {
    fail(optionField(`${path}.weight`), 'a number greater than 0', weight);
  }

  const values = { ...defaults };
  for (const key of NODE_POOL_KEYS) {
    const v = (node as Record<string, unknown>)[key];
    if (v !== undefined) values[key] = v as number;
  }
  validatePoolValues(values, path);

  const {
    name: _name, weight: _weight, acquireTimeoutMs: _a, idleTimeoutMs: _i, statementTimeoutMs: _s,
    maxLifetimeMs: _l, validateIdleAfterMs: _v, leakDetectionThresholdMs: _k, keepAliveMs: _ka,
    ...pgFields
  } = node as NodeOptions & Record<string, unknown>;
  const settings: Record<string, string | number> = {};
  if (!common.pgbouncer) {
    settings.statement_timeout = values.statementTimeoutMs;
    settings.TimeZone = common.timezone;
    if (role === 'replica') settings.default_transaction_read_only = 'on';
  }
  const poolConfig: PoolConfig = {
    ...pgFields,
    application_name: (pgFields.application_name as string | undefined) ?? common.applicationName,
    min: values.min,
    max: values.max,
    idleTimeoutMillis: values.idleTimeoutMs,
    connectionTimeoutMillis: values.acquireTimeoutMs,
    maxUses: values.maxUses,
    keepAlive: values.keepAliveMs > 0 ? true : pgFields.keepAlive,
    keepAliveInitialDelayMillis: values.keepAliveMs > 0 ? values.keepAliveMs : pgFields.keepAliveInitialDelayMillis,
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
    address: nodeAddress(node, env),
    ...values,
  } as ResolvedNode;
  hide(resolved, 'poolConfig', poolConfig);
  return resolved;
}

function validatePoolValues(values: Record<(typeof NODE_POOL_KEYS)[number], number>, path: string): void {
  const at = (k: string) => optionField(path ? `${path}.${k}` : k);
  checkInt(at('max'), values.max, 1);
  checkInt(at('min'), values.min, 0);
  if (values.min > values.max) {
    fail(at('min'), `a number not greater than max (${values.max})`, values.min);
  }
  checkInt(at('acquireTimeoutMs'), values.acquireTimeoutMs, 1);
  checkInt(at('idleTimeoutMs'), values.idleTimeoutMs, 0);
  checkInt(at('statementTimeoutMs'), values.statementTimeoutMs, 0);
  checkInt(at('maxUses'), values.maxUses, 1);
  checkInt(at('maxLifetimeMs'), values.maxLifetimeMs, 0);
  checkInt(at('validateIdleAfterMs'), values.validateIdleAfterMs, 0);
  checkInt(at('leakDetectionThresholdMs'), values.leakDetectionThresholdMs, 0);
  if (values.leakDetectionThresholdMs > 0 && values.leakDetectionThresholdMs < MIN_LEAK_DETECTION_THRESHOLD_MS) {
    fail(at('leakDetectionThresholdMs'), `0 (off) or at least ${MIN_LEAK_DETECTION_THRESHOLD_MS}`, values.leakDetectionThresholdMs);
  }
  checkInt(at('keepAliveMs'), values.keepAliveMs, 0);
}

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
    if (trimmed === '') fail(envField(name), 'a comma-separated list of connection URLs with no empty entry', raw, `Entry ${i + 1} is empty.`);
    checkUrl(`${envField(name)} entry ${i + 1}`, trimmed);
    return { connectionString: trimmed };
  });
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
  const database = databaseName ?? (input.name === undefined ? DEFAULT_DATABASE : checkString(optionField('name'), input.name));
  const env: Env = input.env ?? process.env;
  const prefix = envPrefix(database);
  const preset = resolvePreset(input, env);
  const presetValues = POOL_PRESETS[preset];

  const pgbouncer = input.pgbouncer === undefined ? false : checkBool(optionField('pgbouncer'), input.pgbouncer);
  const applicationName = input.applicationName === undefined ? DEFAULT_APPLICATION_NAME : checkString(optionField('applicationName'), input.applicationName);
  if (Buffer.byteLength(applicationName) > 63) fail(optionField('applicationName'), 'at most 63 bytes', applicationName);
  const timezone = input.timezone === undefined ? 'UTC' : checkString(optionField('timezone'), input.timezone);

  const defaults = {
    min: pick(envInt(env, `${prefix}POOL_MIN_SIZE`, 0), pick(input.min, presetValues.min)),
    max: pick(envInt(env, `${prefix}POOL_MAX_SIZE`, 1), pick(input.max, presetValues.max)),
    acquireTimeoutMs: pick(envInt(env, `${prefix}POOL_ACQUIRE_TIMEOUT_MS`, 1), pick(input.acquireTimeoutMs, presetValues.acquireTimeoutMs)),
    idleTimeoutMs: pick(envInt(env, `${prefix}POOL_IDLE_TIMEOUT_MS`, 0), pick(input.idleTimeoutMs, presetValues.idleTimeoutMs)),
    statementTimeoutMs: pick(envInt(env, `${prefix}STATEMENT_TIMEOUT_MS`, 0), pick(input.statementTimeoutMs, presetValues.statementTimeoutMs)),
    maxUses: pick(input.maxUses, presetValues.maxUses),
    maxLifetimeMs: pick(input.maxLifetimeMs, 1_800_000),
    validateIdleAfterMs: pick(input.validateIdleAfterMs, 500),
    leakDetectionThresholdMs: pick(input.leakDetectionThresholdMs, 0),
    keepAliveMs: pick(input.keepAliveMs, 0),
  };
  // A min taken from the preset must not exceed a smaller explicit max.
  if (input.min === undefined && env[`${prefix}POOL_MIN_SIZE`] === undefined && defaults.min > defaults.max) {
    defaults.min = defaults.max;
  }
  validatePoolValues(defaults, '');

  const envEnv = (k: string) => env[`${prefix}${k}`];
  let primaryRaw: unknown = input.primary;
  const primaryUrl = envEnv('PRIMARY_URL');
  if (primaryUrl !== undefined && primaryUrl !== '') {
    checkUrl(envField(`${prefix}PRIMARY_URL`), primaryUrl);
    const { connectionString: _c, host: _h, port: _p, user: _u, password: _pw, database: _d, ...rest } =
      (input.primary ?? {}) as NodeOptions;
    primaryRaw = { ...rest, connectionString: primaryUrl };
  }
  if (primaryRaw === undefined) {
    fail(optionField('primary'), `a connection object, or the ${prefix}PRIMARY_URL environment variable`, undefined);
  }

  let replicasRaw: unknown = input.replicas ?? [];
  const envReplicas = envReplicaList(env, `${prefix}REPLICA_URLS`);
  if (envReplicas) {
    const given = Array.isArray(input.replicas) ? input.replicas : [];
    replicasRaw = envReplicas.map((r, i) => ({ name: given[i]?.name, weight: given[i]?.weight, ...r }));
  }
  if (!Array.isArray(replicasRaw)) fail(optionField('replicas'), 'an array of connection objects', replicasRaw);

  const common = { applicationName, timezone, pgbouncer };
  const primary = resolveNode(primaryRaw, 'primary', 0, 'primary', database, defaults, common, env);
  const replicas = (replicasRaw as unknown[]).map((r, i) =>
    resolveNode(r, 'replica', i, `replicas[${i}]`, database, defaults, common, env),
  );
  const seen = new Set<string>();
  for (const n of [primary, ...replicas]) {
    if (seen.has(n.name)) fail(optionField(n.role === 'primary' ? 'primary.name' : `replicas[${n.index}].name`), 'a name no other node of this database uses', n.name);
    seen.add(n.name);
  }

  const routingIn = input.routing ?? {};
  if (typeof routingIn !== 'object' || routingIn === null) fail(optionField('routing'), 'an object', routingIn);
  checkKeys(routingIn as Record<string, unknown>, ROUTING_KEYS, 'routing.');
  const strategy = routingIn.strategy ?? 'round-robin';
  if (typeof strategy !== 'function') checkEnum(optionField('routing.strategy'), strategy, STRATEGIES);
  const routing = {
    strategy,
    fallbackToPrimary: routingIn.fallbackToPrimary === undefined ? true : checkBool(optionField('routing.fallbackToPrimary'), routingIn.fallbackToPrimary),
    replicaBanMs: checkInt(optionField('routing.replicaBanMs'), pick(routingIn.replicaBanMs, 30_000), 0),
    maxReplicationLagMs: checkInt(optionField('routing.maxReplicationLagMs'), pick(routingIn.maxReplicationLagMs, 10_000), 0),
    maxReplicationLagBytes: checkInt(optionField('routing.maxReplicationLagBytes'), pick(routingIn.maxReplicationLagBytes, 0), 0),
    lagCheckIntervalMs: checkInt(optionField('routing.lagCheckIntervalMs'), pick(routingIn.lagCheckIntervalMs, 1000), 50),
    consistency: checkEnum(optionField('routing.consistency'), pick<string>(routingIn.consistency, 'read-your-writes'), ['read-your-writes', 'eventual'] as const),
    consistencyHeader: checkString(optionField('routing.consistencyHeader'), pick(routingIn.consistencyHeader, DEFAULT_CONSISTENCY_HEADER)).toLowerCase(),
    readOnlyInTransaction: checkEnum(optionField('routing.readOnlyInTransaction'), pick<string>(routingIn.readOnlyInTransaction, 'join'), ['join', 'warn', 'throw'] as const),
  };

  const breakerIn = input.breaker ?? {};
  checkKeys(breakerIn as Record<string, unknown>, BREAKER_KEYS, 'breaker.');
  const breaker = {
    failureThreshold: checkInt(optionField('breaker.failureThreshold'), pick(breakerIn.failureThreshold, 5), 1),
    resetTimeoutMs: checkInt(optionField('breaker.resetTimeoutMs'), pick(breakerIn.resetTimeoutMs, 10_000), 1),
  };
  const metricsIn = input.metrics ?? {};
  checkKeys(metricsIn as Record<string, unknown>, METRICS_KEYS, 'metrics.');
  const metrics = {
    enabled: metricsIn.enabled === undefined ? true : checkBool(optionField('metrics.enabled'), metricsIn.enabled),
    prometheusPath: checkString(optionField('metrics.prometheusPath'), pick(metricsIn.prometheusPath, 'metrics')).replace(/^\/+/, ''),
    jsonPath: checkString(optionField('metrics.jsonPath'), pick(metricsIn.jsonPath, 'metrics/db-pool')).replace(/^\/+/, ''),
  };

  if (input.onConnect !== undefined && typeof input.onConnect !== 'function') {
    fail(optionField('onConnect'), 'a function (client, { database, pool, role }) => void | Promise<void>', input.onConnect);
  }
  const instancesEnv = envInt(env, 'APP_INSTANCES', 1);
  const secrets = [primaryRaw, ...(replicasRaw as unknown[])]
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
    retryDelayMs: checkInt(optionField('retryDelayMs'), pick(input.retryDelayMs, 500), 0),
    instances: checkInt(optionField('instances'), pick(input.instances, instancesEnv ?? 1), 1),
    sizingAdvisor: input.sizingAdvisor === undefined ? true : checkBool(optionField('sizingAdvisor'), input.sizingAdvisor),
    shutdownTimeoutMs: checkInt(optionField('shutdownTimeoutMs'), pick(input.shutdownTimeoutMs, 10_000), 0),
    slowQueryMs: checkInt(optionField('slowQueryMs'), pick(input.slowQueryMs, 1000), 0),
    pgbouncer,
    routing,
    breaker,
    metrics,
    secrets: [],
  };
  hide(resolved, 'secrets', secrets);
  return resolved;
}

export { redactSecrets };
