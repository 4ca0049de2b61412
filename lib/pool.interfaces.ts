import type { ModuleMetadata, Type, InjectionToken, OptionalFactoryDependency } from '@nestjs/common';
import type { PoolClient, PoolConfig } from 'pg';
import type { SessionContext, SessionOptions, ResetOnRelease, RoutingOptions, FailoverOptions, BreakerOptions, MonitorOptions, MetricsOptions, AlertOptions, PreparedStatementOptions, LoadSizingOptions } from './pool-sections.interfaces.js';
export type { RoutingStrategy, ReadOnlyInTransaction, ReadConsistency, RoutingOptions, ReplicaSelector, ReplicaCandidate, FailoverOptions, BreakerOptions, MonitorOptions, MetricsOptions, OpenTelemetryMetricsOptions, OpenTelemetryMeterProvider, AlertOptions, PreparedStatementOptions, LoadSizingOptions } from './pool-sections.interfaces.js';

/** Where a pool sits in a database: the primary takes writes, replicas take reads. */
export type NodeRole = 'primary' | 'replica';

/** Environment preset names. Chosen by `preset`, else `DB_ENV`, else `NODE_ENV`, else `development`. */
export type PoolPreset = 'development' | 'production' | 'test';

/**
 * One PostgreSQL server: any `pg.PoolConfig` field (connectionString, host, port, user,
 * password, database, ssl, …) plus the extras below. Pool sizing fields given here win over
 * the database-wide values, but not over `DB_*` environment variables. An unknown key that is a
 * near miss of a known one (`hots`, `pasword`) fails validation; other keys go to `pg` as they are.
 */
export interface NodeOptions extends PoolConfig, PoolDefaults {
  /** Name shown in health, metrics and errors. Default: `primary`, `replica-1`, `replica-2`, … */
  name?: string;
  /** Relative share of reads for the `weighted` strategy. Default: `1`. */
  weight?: number;
  /**
   * This entry is a load-balancer / VIP / DNS endpoint (e.g. HAProxy over Patroni's REST checks),
   * not one server: it keeps the role it is configured in (`primary` or `replicas`) whatever server
   * a role check reaches through it (never re-roled, never fenced); each new connection it hands
   * out is checked with `pg_is_in_recovery()` and closed unused if it reached the other role
   * (`EndpointRoleError`, a connection-class error: writes wait for the new primary, reads retry);
   * a read endpoint that fails is out of rotation for at most 1 s (not `replicaBanMs`) and probed
   * again at once. Default: `false`.
   */
  endpoint?: boolean;
  /** Minimum connections kept open (warmed up at start unless `lazy`). Default: from the preset. */
  min?: number;
  /** Maximum connections. Default: from the preset. */
  max?: number;
}

/**
 * Pool settings that apply to every node of a database unless the node overrides them. Preset
 * defaults are development / production / test. Every option is declared, with its bounds,
 * default and environment variable, in the option schema (lib/config/schema*.ts); a unit test
 * keeps the defaults stated here equal to it.
 */
export interface PoolDefaults {
  /**
   * Minimum open connections per pool. Default: preset: 5 / 10 / 2 (development / production / test);
   * a preset min above the `max` you set is lowered to that max.
   */
  min?: number;
  /** Maximum connections per pool. Default: preset: 20 / 50 / 5. */
  max?: number;
  /**
   * How long a caller waits for a connection (pool full or connecting) before it gets a
   * `PoolAcquireTimeoutError`. Always finite. Default: preset: 10000 / 10000 / 5000.
   */
  acquireTimeoutMs?: number;
  /** An idle connection above `min` is closed after this long. Default: preset: 300000 / 300000 / 60000. */
  idleTimeoutMs?: number;
  /**
   * Server-side `statement_timeout` for every connection (with `pgbouncer`: `SET LOCAL` in every
   * transaction of this library; plain statements use the role's setting); `0` disables.
   * Default: preset: 60000 / 60000 / 30000.
   */
  statementTimeoutMs?: number;
  /** A connection is closed after this many checkouts. Default: preset: 50000 / 50000 / 10000. */
  maxUses?: number;
  /** A connection is retired after this long (±2.5% jitter per connection); `0` disables. Default: `1800000` (30 min). */
  maxLifetimeMs?: number;
  /**
   * A connection idle longer than this is checked (an empty query, bounded by half of
   * `acquireTimeoutMs`, at most `validationTimeoutMs`) before it is handed out; a broken one is replaced unseen. `0` checks always. Default: `500`.
   */
  validateIdleAfterMs?: number;
  /** Warn (with the acquiring stack) when a client is held longer than this; `0` disables, else minimum 2000. Default: `0`. */
  leakDetectionThresholdMs?: number;
  /** Send a TCP keep-alive on idle connections after this long; `0` disables. Default: preset: 10000 / 10000 / 10000. */
  keepAliveMs?: number;
  /**
   * How long opening one connection may take (TCP, TLS, startup, authentication), within the
   * caller's `acquireTimeoutMs`; a server that accepts TCP but never answers fails the acquire
   * with `PoolAcquireTimeoutError` and counts towards the breaker. Default: preset: 5000 / 5000 / 5000.
   */
  connectTimeoutMs?: number;
  /**
   * Client-side deadline of a statement: a server that stops answering (a frozen host, a network
   * partition) never fires its own `statement_timeout`, so a statement with no answer after this
   * long fails with `PoolStatementTimeoutError` and its connection is destroyed (on a replica this
   * bans it and the read is retried once elsewhere). `0` disables.
   * Default: `statementTimeoutMs + 5000` (so the server's own timeout fires first), `0` when `statementTimeoutMs` is `0`.
   */
  queryTimeoutMs?: number;
  /**
   * Deadline of the library's own round trips on a connection: validation on borrow (also at
   * most half of `acquireTimeoutMs`), `ROLLBACK` on release, the demotion check, and the default
   * of its probes. A connection that misses it is destroyed, never pooled again.
   * Default: preset: 5000 / 5000 / 2000.
   */
  validationTimeoutMs?: number;
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
  /**
   * The primary server: connection settings plus sizing overrides. Required (or `DB_PRIMARY_URL`).
   * A libpq multi-host URL (`postgres://u:p@h1:5432,h2:5432/db?target_session_attrs=read-write`)
   * or a list of nodes names every server that may be the primary: the one answering as the
   * primary takes the writes, the others read (see `failover`). Host names are resolved on every connect.
   */
  primary?: NodeOptions | NodeOptions[];
  /** Read replicas, in order. Default: `[]`, or `DB_REPLICA_URLS` when set. */
  replicas?: NodeOptions[];
  /** Preset for sizing and timeouts. Default: `DB_ENV`, else `NODE_ENV`, else `development`. */
  preset?: PoolPreset;
  /** `application_name` reported to the server (visible in `pg_stat_activity`). Default: `nestjs-pg-pools`. */
  applicationName?: string;
  /** Session time zone for every connection. Default: `UTC`. */
  timezone?: string;
  /**
   * Runs on every new connection before it is first handed out, and again after each session reset
   * (`resetOnRelease`), so what it sets up is there for every borrower. A throw discards the connection.
   */
  onConnect?: (client: PoolClient, context: ConnectContext) => void | Promise<void>;
  /**
   * Open nothing at start: no warm-up to `min`, no start-up sizing advisor or lag check; the first
   * query connects (the lag monitor starts measuring once a pool has a connection). Default: `false`.
   */
  lazy?: boolean;
  /** Attempts to open the first connection of each pool at start. Default: `5`. */
  retryAttempts?: number;
  /** First retry delay; doubles each attempt, with ±20% jitter. Default: `500`. */
  retryDelayMs?: number;
  /** App instances sharing the servers, for the sizing advisor. Default: `APP_INSTANCES`, else `1`. */
  instances?: number;
  /** Run the sizing advisor (`SHOW max_connections` per server) at start; skipped when `lazy`. Default: `true`. */
  sizingAdvisor?: boolean;
  /**
   * On shutdown, wait this long for checked-out clients to come back; then the connections still
   * out are closed (their holders get a connection error) and the pools end. Default: `10000`.
   */
  shutdownTimeoutMs?: number;
  /** Queries slower than this emit a `slow-query` event; `0` disables. Default: `1000`. */
  slowQueryMs?: number;
  /** Read routing. */
  routing?: RoutingOptions;
  /** Per-node circuit breaker. */
  breaker?: BreakerOptions;
  /** Role discovery and failover to a promoted replica. */
  failover?: FailoverOptions;
  /** Hung-node detection. */
  monitor?: MonitorOptions;
  /**
   * Built-in metrics endpoints. They are registered once per application and show every
   * database; only the first `PoolModule` import's value is used. With `forRootAsync`, give it
   * next to `useFactory` (routes cannot wait for async options); a `metrics` returned by the
   * factory is validated but not used.
   */
  metrics?: MetricsOptions;
  /** Pool alerts: thresholds, cooldown, logging. */
  alerts?: AlertOptions;
  /** Sizing from observed load: window, headroom, warnings. Advises only. */
  loadSizing?: LoadSizingOptions;
  /** Automatic prepared statements per connection. Default: on, threshold 3, 100 per connection. */
  preparedStatements?: PreparedStatementOptions;
  /**
   * The servers sit behind PgBouncer in transaction mode: no `options` startup parameter (PgBouncer
   * drops it), `timezone` sent as the tracked `TimeZone` parameter, `statementTimeoutMs` applied with
   * `SET LOCAL` inside transactions, named prepared statements refused (`NamedStatementUnsupportedError`) and automatic
   * preparation off, unless `preparedStatements.pgbouncerProtocol` declares PgBouncer ≥ 1.21 support. Default: `false`.
   */
  pgbouncer?: boolean;
  /**
   * Resets the session state a borrower changed (settings, `SET ROLE`, `LISTEN`, temporary tables,
   * session advisory locks, SQL `PREPARE`, cursors `WITH HOLD`) before the connection serves anyone
   * else; a reset that fails closes the connection. `'auto'`: only after a checkout that sent a
   * statement able to change it (one extra round trip then, nothing otherwise); `'always'`: after
   * every checkout; `'never'`: the session is handed on as it is. With `pgbouncer`, `'auto'` resets
   * nothing (session state is not kept per client there: use session contexts, which are
   * transaction-local). Default: `'auto'`.
   */
  resetOnRelease?: ResetOnRelease;
  /**
   * Per-request session context: `fromRequest(req)` returns `{ role?, settings? }` for the request
   * (read at its first statement); every statement of the request then runs in a transaction with
   * them applied by `set_config(…, true)` (`SET LOCAL`): on the primary, on replicas, in
   * transactions, through `withClient` and `db.routedPool`. `secret` lists settings whose values are
   * never logged. Default: no context (`db.withSession()` sets one for code no request reaches).
   */
  session?: SessionOptions;
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
  /** Built-in metrics endpoints (static: routes are registered before the factory runs). See `PoolModuleOptions.metrics`. */
  metrics?: MetricsOptions;
}

export interface TransactionOptions {
  /** `BEGIN ISOLATION LEVEL …`; default: the server's default. A joined transaction must ask for the same level or none. */
  isolationLevel?: 'read uncommitted' | 'read committed' | 'repeatable read' | 'serializable';
  /** `BEGIN READ ONLY`; default `false`. A joined transaction must ask for the same or nothing. */
  readOnly?: boolean;
  /** `DEFERRABLE` (with serializable, read-only); default `false`. A joined transaction must ask for the same or nothing. */
  deferrable?: boolean;
  /**
   * `join` an enclosing transaction of the same database (default), or start a `requiresNew` one
   * on another client. A joined call that throws marks the enclosing transaction rollback-only.
   */
  propagation?: 'join' | 'requiresNew';
}

/**
 * The context of one `@WithSession()` call, from the method's `this` (`T`) and arguments (`A`): it
 * gets every argument, so it declares the leading ones it needs, and the decorator only fits a
 * method whose leading parameters take them; `undefined` runs without a context.
 */
export type SessionContextOf<A extends unknown[] = any[], T = any> = (this: T, ...args: A) => SessionContext | undefined;

/**
 * The decorator `@WithSession(fn)` gives: it fits a method whose leading parameters pass what `fn`
 * declares (`A`), whatever follows; on any other method the compiler names the mismatch.
 */
export type SessionMethodDecorator<A extends unknown[]> = <M extends (...args: any[]) => unknown>(
  target: object,
  key: string | symbol,
  descriptor: TypedPropertyDescriptor<M> & (Parameters<M> extends [...A, ...unknown[]] ? unknown : { contextFunctionExpects: A; methodTakes: Parameters<M> }),
) => TypedPropertyDescriptor<M> | void;

export interface WithSessionOptions {
  /** The database whose statements run with the context. Default: the default database (`default`). */
  database?: string;
}

export interface ReadOnlyOptions {
  /**
   * Only use replicas that replayed at least this WAL position: a `consistencyToken()` value
   * (`0/16B3748` for the default database, `name:0/16B3748` for a named one).
   */
  minLsn?: string;
}
