import { DEFAULT_DATABASE } from '../pool.constants.js';
import { PoolConfigurationError } from '../pool.exceptions.js';
import type { NodeOptions, PoolModuleOptions, PoolPreset } from '../pool.interfaces.js';
import { resolveAlertOptions, resolveMetricsOptions } from '../metrics/metrics.options.js';
import { resolveLoadSizingOptions } from '../metrics/sizing.options.js';
import { hide, primaryCandidates, resolveNode } from './nodes.js';
import { checkKeys, envField, field, readOption, resolveSection } from './option.js';
import { translatePgPoolNames } from './pg-pool-names.js';
import { basePoolValues, envInt, type Env } from './pool-values.js';
import { resolvePreparedStatements } from './prepared-statements.options.js';
import { describeValue, redactSecrets, redactUrl } from './redact.js';
import type { ResolvedOptions } from './resolved.js';
import { DATABASE_OPTIONS, PRESET_NAMES } from './schema.database.js';
import { TOP_LEVEL_KEYS } from './schema.js';
import { BREAKER_OPTIONS, FAILOVER_OPTIONS, MONITOR_OPTIONS, ROUTING_OPTIONS, SESSION_OPTIONS } from './schema.sections.js';
import { checkUrl, passwordOf, withEnvUrl } from './urls.js';

export type { ResolvedNode, ResolvedOptions } from './resolved.js';
export { DEFAULT_HOLD_WRITES_MS } from './schema.sections.js';
export { QUERY_DEADLINE_GRACE_MS } from './pool-values.js';
export { splitMultiHostUrl } from './urls.js';

const D = DATABASE_OPTIONS;

/**
 * The identity a `forRoot*()` call registers under, checked before any provider exists: `name`
 * (the database's name, a non-empty string) and `isGlobal` (a boolean, default true).
 */
export function resolveModuleIdentity(options: { name?: unknown; isGlobal?: unknown } | null | undefined): { name: string; global: boolean } {
  const name = options?.name === undefined ? DEFAULT_DATABASE : D.name.check(options.name, field('name'));
  const global = readOption(D.isGlobal, options?.isGlobal, field('isGlobal'));
  return { name, global };
}

/** Environment variable prefix: `DB_` for the default database, `DB_<NAME>_` for a named one. */
export function envPrefix(database: string): string {
  return database === DEFAULT_DATABASE ? 'DB_' : `DB_${database.toUpperCase().replace(/[^A-Z0-9]+/g, '_')}_`;
}

function resolvePreset(options: PoolModuleOptions, env: Env): PoolPreset {
  if (options.preset !== undefined) return D.preset.check(options.preset, field('preset'));
  const name = D.preset.env!;
  if (env[name] !== undefined && env[name] !== '') return D.preset.check(env[name], envField(name));
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
      throw new PoolConfigurationError(envField(name).name, 'a comma-separated list of connection URLs with no empty entry', shown, `Entry ${i + 1} is empty.`);
    }
    checkUrl(field(name, (n) => `environment variable \`${n}\` entry ${i + 1}`), trimmed);
    return { connectionString: trimmed };
  });
}

/**
 * Merges preset < explicit options < `DB_*` environment overrides, validates everything against
 * the option schema and returns the settings each pool is built from. Throws one
 * `PoolConfigurationError` on the first invalid value.
 */
export function resolveOptions(given: PoolModuleOptions & { name?: string; isGlobal?: boolean }, databaseName?: string): ResolvedOptions {
  if (given === null || typeof given !== 'object' || Array.isArray(given)) {
    throw new PoolConfigurationError('PoolModule options', 'an object', describeValue(given));
  }
  const input = translatePgPoolNames(given, field(''), false);
  const raw = input as Record<string, unknown>;
  checkKeys(input, TOP_LEVEL_KEYS, field(''));
  const database = databaseName ?? resolveModuleIdentity(input).name;
  readOption(D.isGlobal, input.isGlobal, field('isGlobal'));
  const env: Env = readOption(D.env, input.env, field('env')) ?? process.env;
  const prefix = envPrefix(database);
  const preset = resolvePreset(input, env);
  const top = <K extends keyof typeof D>(key: K) => readOption(D[key], raw[key], field(key)) as ReturnType<(typeof D)[K]['check']>;

  const pgbouncer = top('pgbouncer');
  const applicationName = top('applicationName');
  const timezone = top('timezone');
  const defaults = basePoolValues(raw, preset, env, prefix);

  const primaryEnv = `${prefix}${D.primary.env}`;
  const primaryUrl = env[primaryEnv];
  let primaryRaw: unknown = input.primary;
  if (primaryUrl !== undefined && primaryUrl !== '') {
    checkUrl(envField(primaryEnv), primaryUrl);
    primaryRaw = withEnvUrl(input.primary, primaryUrl);
  }
  if (primaryRaw === undefined) field('primary').fail(`a connection object, or the ${primaryEnv} environment variable`, undefined);
  const candidates = primaryCandidates(primaryRaw, primaryUrl !== undefined && primaryUrl !== '' ? envField(primaryEnv) : field('primary.connectionString'));

  let replicasRaw: unknown = input.replicas ?? [];
  const envReplicas = envReplicaList(env, `${prefix}${D.replicas.env}`);
  if (envReplicas) {
    const inCode: unknown[] = Array.isArray(input.replicas) ? input.replicas : [];
    replicasRaw = envReplicas.map((r, i) => withEnvUrl(inCode[i], r.connectionString!));
  }
  if (!Array.isArray(replicasRaw)) field('replicas').fail('an array of connection objects', replicasRaw);

  const resetOnRelease = top('resetOnRelease');
  const preparedStatements = resolvePreparedStatements(input.preparedStatements, pgbouncer);
  const common = { applicationName, timezone, pgbouncer, resetOnRelease, preparedStatements };
  const primary = resolveNode(candidates[0], 'primary', 0, candidates.length > 1 ? 'primary[0]' : 'primary', database, defaults, common, env);
  // Array.from: a hole (`[ , {…}]`) becomes `undefined`, which the node check refuses with its index.
  const replicas = Array.from(replicasRaw as unknown[]).map((r, i) => resolveNode(r, 'replica', i, `replicas[${i}]`, database, defaults, common, env));
  const inList = replicas.length;
  candidates.slice(1).forEach((c, i) => {
    const named = c !== null && typeof c === 'object' && !Array.isArray(c) ? { ...(c as NodeOptions), name: (c as NodeOptions).name ?? `${primary.name}-${i + 2}` } : c;
    replicas.push(resolveNode(named, 'replica', inList + i, `primary[${i + 1}]`, database, defaults, common, env));
  });
  const seen = new Set<string>();
  for (const n of [primary, ...replicas]) {
    const path = n.role === 'primary' ? 'primary.name' : n.index < inList ? `replicas[${n.index}].name` : `primary[${n.index - inList + 1}].name`;
    if (seen.has(n.name)) field(path).fail('a name no other node of this database uses', n.name);
    seen.add(n.name);
  }

  const routing = resolveSection(ROUTING_OPTIONS, input.routing, field('routing'));
  const breaker = resolveSection(BREAKER_OPTIONS, input.breaker, field('breaker'));
  const failover = resolveSection(FAILOVER_OPTIONS, input.failover, field('failover'));
  if (!failover.discoverRoles && candidates.length > 1) {
    field('failover.discoverRoles').fail('true (or one host in primary): with pinned roles only the first host could ever take writes', false);
  }
  const monitor = resolveSection(MONITOR_OPTIONS, input.monitor, field('monitor'));
  const metrics = resolveMetricsOptions(input.metrics);
  const alerts = resolveAlertOptions(input.alerts);
  const loadSizing = resolveLoadSizingOptions(input.loadSizing);
  const onConnect = top('onConnect');
  const instancesEnv = envInt(env, D.instances.env!, D.instances.min);
  const secrets = [...candidates, ...(replicasRaw as unknown[])].map((n) => passwordOf(n as NodeOptions)).filter((p): p is string => !!p);

  const resolved: ResolvedOptions = {
    database,
    preset,
    primary,
    replicas,
    applicationName,
    timezone,
    onConnect,
    lazy: top('lazy'),
    retryAttempts: top('retryAttempts'),
    retryDelayMs: top('retryDelayMs'),
    instances: readOption(D.instances, input.instances ?? instancesEnv, field('instances')),
    sizingAdvisor: top('sizingAdvisor'),
    shutdownTimeoutMs: top('shutdownTimeoutMs'),
    slowQueryMs: top('slowQueryMs'),
    pgbouncer,
    resetOnRelease,
    session: resolveSection(SESSION_OPTIONS, input.session, field('session'), { expected: 'an object { fromRequest?, secret? }' }),
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

export { redactSecrets };
