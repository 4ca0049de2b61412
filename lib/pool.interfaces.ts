import type { ModuleMetadata, Type, InjectionToken, OptionalFactoryDependency } from '@nestjs/common';
import type { PoolClient, PoolConfig } from 'pg';

/** Where a pool sits in a database: the primary takes writes, replicas take reads. */
export type NodeRole = 'primary' | 'replica';

/** Environment preset names. Chosen by `preset`, else `DB_ENV`, else `NODE_ENV`, else `development`. */
export type PoolPreset = 'development' | 'production' | 'test';

/** Built-in replica selection strategies. */
export type RoutingStrategy = 'round-robin' | 'random' | 'weighted' | 'least-busy';

/** What a `@ReadOnly()` scope does when it runs inside a transaction. */
export type ReadOnlyInTransaction = 'join' | 'warn' | 'throw';

/** Read consistency inside a request / ALS scope. */
export type ReadConsistency = 'read-your-writes' | 'eventual';

/**
 * One PostgreSQL server: any `pg.PoolConfig` field (connectionString, host, port, user,
 * password, database, ssl, …) plus the extras below. Pool sizing fields given here win over
 * the database-wide values.
 */
export interface NodeOptions extends PoolConfig {
  /** Name shown in health, metrics and errors. Default: `primary`, `replica-1`, `replica-2`, … */
  name?: string;
  /** Relative share of reads for the `weighted` strategy. Default: `1`. */
  weight?: number;
  /** Minimum connections kept open (warmed up at start unless `lazy`). Default: from the preset. */
  min?: number;
  /** Maximum connections. Default: from the preset. */
  max?: number;
}

/** Pool settings that apply to every node of a database unless the node overrides them. */
export interface PoolDefaults {
  /** Minimum open connections per pool. Default: preset (development 5, production 10, test 2). */
  min?: number;
  /** Maximum connections per pool. Default: preset (development 20, production 50, test 5). */
  max?: number;
  /**
   * How long a caller waits for a connection (pool full or connecting) before it gets a
   * `PoolAcquireTimeoutError`. Always finite. Default: preset (development/production 10000, test 5000).
   */
  acquireTimeoutMs?: number;
  /** An idle connection above `min` is closed after this long. Default: preset (300000 / 300000 / 60000). */
  idleTimeoutMs?: number;
  /** Server-side `statement_timeout` for every connection; `0` disables. Default: preset (60000 / 60000 / 30000). */
  statementTimeoutMs?: number;
  /** A connection is closed after this many checkouts. Default: preset (50000 / 50000 / 10000). */
  maxUses?: number;
  /** A connection is retired after this long (±2.5% jitter per connection); `0` disables. Default: `1800000` (30 min). */
  maxLifetimeMs?: number;
  /** A connection idle longer than this is checked (`SELECT 1`) before it is handed out. `0` checks always. Default: `500`. */
  validateIdleAfterMs?: number;
  /** Warn (with the acquiring stack) when a client is held longer than this; `0` disables, else minimum 2000. Default: `0`. */
  leakDetectionThresholdMs?: number;
  /** Send a TCP keep-alive on idle connections after this long; `0` disables. Default: `0`. */
  keepAliveMs?: number;
}

export interface RoutingOptions {
  /**
   * How a read picks a replica: `round-robin`, `random`, `weighted` (per-replica `weight`),
   * `least-busy` (fewest in-use + waiting clients), or your own function. Default: `round-robin`.
   */
  strategy?: RoutingStrategy | ReplicaSelector;
  /** When no replica is usable, send reads to the primary (`true`) or fail with `NoReplicaAvailableError`. Default: `true`. */
  fallbackToPrimary?: boolean;
  /** How long a replica that failed with a connection-class error is skipped. Default: `30000`. */
  replicaBanMs?: number;
  /** A replica whose replay is behind by more than this is skipped; `0` disables the lag check. Default: `10000`. */
  maxReplicationLagMs?: number;
  /** A replica behind the primary by more WAL bytes than this is skipped; `0` disables. Default: `0`. */
  maxReplicationLagBytes?: number;
  /** How often the lag monitor polls the primary and each replica. Default: `1000`. */
  lagCheckIntervalMs?: number;
  /** Read-your-writes inside a scope, or plain eventual consistency. Default: `read-your-writes`. */
  consistency?: ReadConsistency;
  /** Request header that carries a consistency token from one request to the next. Default: `x-pg-consistency-token`. */
  consistencyHeader?: string;
  /** `@ReadOnly()` inside a transaction: `join` silently, `warn` then join, or `throw`. Default: `join`. */
  readOnlyInTransaction?: ReadOnlyInTransaction;
}

/** A custom replica selector: return one of `candidates` (all usable), or `undefined` to fall back. */
export type ReplicaSelector = (candidates: readonly ReplicaCandidate[]) => ReplicaCandidate | undefined;

export interface ReplicaCandidate {
  readonly name: string;
  readonly weight: number;
  readonly inUse: number;
  readonly waiting: number;
  readonly idle: number;
  readonly total: number;
  /** Last measured replication lag in ms, or `undefined` before the first measurement. */
  readonly lagMs: number | undefined;
}

export interface BreakerOptions {
  /** Consecutive connection failures that open a node's breaker. Default: `5`. */
  failureThreshold?: number;
  /** How long an open breaker fails fast before one trial request is let through. Default: `10000`. */
  resetTimeoutMs?: number;
}

export interface MetricsOptions {
  /** Register `GET /metrics` and `GET <jsonPath>`. Default: `true`. */
  enabled?: boolean;
  /** Path of the Prometheus text endpoint. Default: `metrics`. */
  prometheusPath?: string;
  /** Path of the JSON endpoint. Default: `metrics/db-pool`. */
  jsonPath?: string;
}

export interface ConnectContext {
  /** The database name (`default` unless `name` was given). */
  database: string;
  /** The node's name, e.g. `primary` or `replica-1`. */
  pool: string;
  role: NodeRole;
}

/** Options of `PoolModule.forRoot()` (and the value `forRootAsync` factories return). */
export interface PoolModuleOptions extends PoolDefaults {
  /** The primary server: connection settings plus sizing overrides. Required (or `DB_PRIMARY_URL`). */
  primary?: NodeOptions;
  /** Read replicas, in order. Default: none (`DB_REPLICA_URLS` when set). */
  replicas?: NodeOptions[];
  /** Preset for sizing and timeouts. Default: `DB_ENV`, else `NODE_ENV`, else `development`. */
  preset?: PoolPreset;
  /** `application_name` reported to the server (visible in `pg_stat_activity`). Default: `nestjs-pg-pools`. */
  applicationName?: string;
  /** Session time zone for every connection. Default: `UTC`. */
  timezone?: string;
  /** Runs once on every new connection before it is first handed out. A throw discards the connection. */
  onConnect?: (client: PoolClient, context: ConnectContext) => void | Promise<void>;
  /** Skip warming the pools up to `min` at start. Default: `false`. */
  lazy?: boolean;
  /** Attempts to open the first connection of each pool at start. Default: `5`. */
  retryAttempts?: number;
  /** First retry delay; doubles each attempt, with ±20% jitter. Default: `500`. */
  retryDelayMs?: number;
  /** App instances sharing the servers, for the sizing advisor. Default: `APP_INSTANCES`, else `1`. */
  instances?: number;
  /** Run the sizing advisor (`SHOW max_connections` per server) at start. Default: `true`. */
  sizingAdvisor?: boolean;
  /** On shutdown, wait this long for checked-out clients before ending the pools. Default: `10000`. */
  shutdownTimeoutMs?: number;
  /** Queries slower than this emit a `slow-query` event; `0` disables. Default: `1000`. */
  slowQueryMs?: number;
  /** Read routing. */
  routing?: RoutingOptions;
  /** Per-node circuit breaker. */
  breaker?: BreakerOptions;
  /** Built-in metrics endpoints. Only the first registered database's value is used. */
  metrics?: MetricsOptions;
  /** The servers sit behind PgBouncer in transaction mode: avoid session state. Default: `false`. */
  pgbouncer?: boolean;
  /** Environment to read `DB_*` overrides and presets from. Default: `process.env`. */
  env?: Record<string, string | undefined>;
}

/** `forRoot()` input: the options plus module-level settings. */
export interface PoolModuleRootOptions extends PoolModuleOptions {
  /** Name of this database; inject it with `@InjectDatabase(name)`. Default: the default database. */
  name?: string;
  /** Make the database injectable everywhere without importing the module again. Default: `true`. */
  isGlobal?: boolean;
}

export interface PoolOptionsFactory {
  createPoolOptions(): PoolModuleOptions | Promise<PoolModuleOptions>;
}

export interface PoolModuleAsyncOptions extends Pick<ModuleMetadata, 'imports'> {
  /** Name of this database. Default: the default database. */
  name?: string;
  /** Default: `true`. */
  isGlobal?: boolean;
  useExisting?: Type<PoolOptionsFactory>;
  useClass?: Type<PoolOptionsFactory>;
  useFactory?: (...args: any[]) => PoolModuleOptions | Promise<PoolModuleOptions>;
  inject?: Array<InjectionToken | OptionalFactoryDependency>;
}

export interface TransactionOptions {
  isolationLevel?: 'read uncommitted' | 'read committed' | 'repeatable read' | 'serializable';
  readOnly?: boolean;
  deferrable?: boolean;
  /** `join` an enclosing transaction of the same database (default), or start a `requiresNew` one on another client. */
  propagation?: 'join' | 'requiresNew';
}

export interface ReadOnlyOptions {
  /** Only use replicas that replayed at least this LSN (a `consistencyToken()` from an earlier request). */
  minLsn?: string;
}
