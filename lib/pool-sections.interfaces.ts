import type { CanActivate, Type } from '@nestjs/common';
import type { Registry, RegistryContentType } from 'prom-client';

// The option sections of `PoolModuleOptions` (routing, failover, breaker, monitor, metrics, alerts,
// prepared statements, load sizing), re-exported by pool.interfaces.ts, and the
// names they use. Each default is declared once,
// in the option schema (lib/config/schema*.ts); a unit test checks the `Default:` lines here against it.

/** Built-in replica selection strategies. */
export type RoutingStrategy = 'round-robin' | 'random' | 'weighted' | 'least-busy';

/** What a `@ReadOnly()` scope does when it runs inside a transaction. */
export type ReadOnlyInTransaction = 'join' | 'warn' | 'throw';

/** Read consistency inside a request / ALS scope. */
export type ReadConsistency = 'read-your-writes' | 'eventual';

export interface RoutingOptions {
  /**
   * How a read picks a replica: `round-robin`, `random`, `weighted` (per-replica `weight`),
   * `least-busy` (fewest in-use + waiting clients), or your own function. Default: `round-robin`.
   */
  strategy?: RoutingStrategy | ReplicaSelector;
  /** When no replica is usable, send reads to the primary (`true`) or fail with `NoReplicaAvailableError`. Default: `true`. */
  fallbackToPrimary?: boolean;
  /**
   * A replica that failed with a connection-class error is skipped for this long, then probed
   * (`SELECT 1`) every `replicaBanMs` until it answers. Default: `30000`.
   */
  replicaBanMs?: number;
  /** A replica whose replay is behind by more than this is skipped; `0` disables the lag check. Default: `10000`. */
  maxReplicationLagMs?: number;
  /** A replica behind the primary by more WAL bytes than this is skipped; `0` disables. Default: `0`. */
  maxReplicationLagBytes?: number;
  /** How often the lag monitor polls the primary and each replica. Default: `1000`. */
  lagCheckIntervalMs?: number;
  /**
   * `read-your-writes`: after a statement on the primary (outside `@ReadOnly()`) or a committed
   * transaction, later reads of the same request / scope only use replicas that replayed it, else
   * the primary. `eventual`: reads ignore the scope's writes. Default: `read-your-writes`.
   */
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

/**
 * Following the primary. With `discoverRoles` on (the default) the configured roles are a first
 * guess: every node is asked `pg_is_in_recovery()` at start, every `checkIntervalMs`, and at once
 * when the write node loses its connection, answers 25006 (read-only), or a replica answers as a
 * primary. The node that answers as the primary takes the writes (a promoted replica after a
 * failover); a node in recovery reads; a second primary on an older timeline (split brain) is fenced.
 */
export interface FailoverOptions {
  /** Discover roles (`true`) or pin the configured ones: writes always go to `primary`. Default: `true`. */
  discoverRoles?: boolean;
  /** How often every node's role is checked. Default: `1000`. */
  checkIntervalMs?: number;
  /** Deadline of one role check (`pg_is_in_recovery()`) on one node; a node that does not answer counts as down. Default: `1000`. */
  checkTimeoutMs?: number;
  /**
   * After the write node is lost, writes fail at once with `PrimaryUnavailableError` while the
   * nodes are checked every 250 ms (at most `checkIntervalMs`) for a new primary, for up to this
   * long; after it the checks go back to `checkIntervalMs` and the error says none was found in time. Default: `30000`.
   */
  failoverTimeoutMs?: number;
  /**
   * Writes held through a role change. While the primary is changing (no node answers as the
   * primary, or a role check runs because the write node lost its connection, answered 57P03
   * "shutting down / starting up" or 25006 "read-only"), a write that has not been sent waits for
   * the new primary for up to this long (counted from the call) instead of failing; a write the
   * write node refused without running it (57P03 at connect, 25006, connection refused) waits
   * for the role check and runs on the new primary, as does a single statement the server
   * terminated with 57P01 (a fast shutdown rolled it back). In a transaction only the `BEGIN`
   * waits. A write that was sent and lost its connection still fails (its outcome is unknown):
   * never run again. Each held write counts in `db_writes_held_total`, emits a `write-held` event and logs
   * (debug) how long it waited. `0` disables. Default: `5000` (a planned Patroni switchover leaves
   * no primary for ~1.1 s).
   */
  holdWritesMs?: number;
}

export interface BreakerOptions {
  /** Consecutive connection failures that open a node's breaker. Default: `5`. */
  failureThreshold?: number;
  /**
   * How long an open breaker fails fast (`PoolUnavailableError`) before one trial request is let
   * through. A background reconnect (with backoff) closes it earlier as soon as the server answers. Default: `10000`.
   */
  resetTimeoutMs?: number;
}

/**
 * The node monitor (enhanced failure monitoring): one extra connection per node (its
 * `application_name` ends in `:monitor`), opened once the node's pool has a connection, sends
 * `SELECT 1` every `intervalMs`. A probe with no answer within `timeoutMs`, while no other
 * statement of that node answered either, marks the node hung: a replica leaves read rotation
 * (banned) and the reads waiting on it are retried once on another node; on the primary the
 * statements waiting on it are aborted with `NodeHungError` and their connections destroyed. A
 * hung node is back as soon as its probes answer again.
 */
export interface MonitorOptions {
  /** Watch every node. Default: `true`. */
  enabled?: boolean;
  /** Time between two probes of one node. Default: `250`. */
  intervalMs?: number;
  /** A probe unanswered this long marks the node hung (with the interval, detection takes at most their sum). Default: `500`. */
  timeoutMs?: number;
}

export interface MetricsOptions {
  /** Register the metrics endpoints (Prometheus text, JSON, dashboard) and metrics. `false` registers nothing. Default: `true`. */
  enabled?: boolean;
  /**
   * Path of the Prometheus text endpoint, or `false` for none (the metrics still go into
   * `registry`, e.g. when @willsoto/nestjs-prometheus already serves `/metrics`). Default: `metrics`.
   */
  prometheusPath?: string | false;
  /** Path of the JSON endpoint (every database and node). Default: `metrics/db-pool`. */
  jsonPath?: string;
  /** Serve the live dashboard page: `true`, `false`, or unset = served except with the `production` preset. Default: unset. */
  dashboard?: boolean;
  /** Path of the dashboard page. Default: `<jsonPath>/dashboard`. */
  dashboardPath?: string;
  /**
   * A prom-client `Registry` to register the `db_*` metrics into, so they show next to your own
   * (pass prom-client's global `register` to share it with @willsoto/nestjs-prometheus).
   * Default: a new `Registry` per app, exposed at `prometheusPath`.
   */
  registry?: Registry<RegistryContentType>;
  /**
   * Guards that protect every metrics endpoint, as `@UseGuards()` takes them: classes (created by
   * Nest; their dependencies must be global providers) or instances. Default: none (open).
   */
  guards?: Array<Type<CanActivate> | CanActivate>;
  /**
   * Also report the pool metrics through OpenTelemetry, under the semantic-convention names
   * (`db.client.connection.count`, `.idle.max`, `.idle.min`, `.max`, `.pending_requests`,
   * `.timeouts`, `.create_time`, `.wait_time`, `.use_time`, each with
   * `db.client.connection.pool.name` = `<database>/<node>`), plus `nestjs_pg_pools.routing.statements`
   * and `nestjs_pg_pools.replica.lag`.
   * - `true`: the global MeterProvider of `@opentelemetry/api` (an optional peer, ^1.9; it must be
   *   installed, else the app fails to start with an error saying so).
   * - `{ meterProvider }`: that provider (e.g. an `@opentelemetry/sdk-metrics` MeterProvider);
   *   `@opentelemetry/api` is then not loaded.
   *
   * The histograms subscribe to the pool events, which costs one small object per acquire and
   * release while enabled. Default: `false` (off).
   */
  openTelemetry?: boolean | OpenTelemetryMetricsOptions;
}

/** `metrics.openTelemetry` as an object. */
export interface OpenTelemetryMetricsOptions {
  /** The MeterProvider to create the meter from. Default: the global one of `@opentelemetry/api`. */
  meterProvider?: OpenTelemetryMeterProvider;
  /** Name of the meter (the instrumentation scope). Default: `nestjs-pg-pools`. */
  meterName?: string;
}

/** The part of an OpenTelemetry `MeterProvider` the module uses (so the typings need no `@opentelemetry/api`). */
export interface OpenTelemetryMeterProvider {
  getMeter(name: string, version?: string, options?: { schemaUrl?: string }): unknown;
}

/**
 * Pool alerts (seed thresholds), checked per node every `intervalMs` on a timer that does not keep
 * the process alive. Each fires an `alert` event (and a log line) at most once per `cooldownMs`.
 */
export interface AlertOptions {
  /** Check alerts at all. Default: `true`. */
  enabled?: boolean;
  /** `pool-waiting` fires when more than this many callers wait for a connection. Default: `10`. */
  waitingThreshold?: number;
  /** `pool-usage-high` fires when in-use / max is above this ratio. Default: `0.8`. */
  usageWarn?: number;
  /** `pool-usage-critical` fires when in-use / max is above this ratio. Default: `0.9`. */
  usageCritical?: number;
  /** Minimum time between two alerts of the same kind for the same node. Default: `60000`. */
  cooldownMs?: number;
  /** How often the pools are checked (minimum 100). Default: `1000`. */
  intervalMs?: number;
  /** Log each alert through Nest's `Logger` (context `PoolModule:<database>`). Default: `true`. */
  log?: boolean;
}

/**
 * Automatic prepared statements: a parameterized statement (one with values) sent `threshold`
 * times on a connection is prepared there under a generated name (`__pgp_…`) and runs as that
 * named statement from then on, skipping the server's parse and plan. Each connection keeps at
 * most `cacheSize` of them (least recently used are deallocated). A plan a schema change
 * invalidated is prepared again and the statement run once more outside a transaction; inside
 * one the statement fails with `PreparedStatementInvalidatedError`. Statements without values,
 * statements with their own `name`, and the library's own statements are never touched.
 */
export interface PreparedStatementOptions {
  /** Prepare repeated parameterized statements. Default: `true` (`false` in PgBouncer mode unless `pgbouncerProtocol`). */
  enabled?: boolean;
  /** Sends of the same text on one connection before it is prepared there (1 = at once). Default: `3`. */
  threshold?: number;
  /** Prepared statements kept per connection; the least recently used one is deallocated beyond it. Default: `100`. */
  cacheSize?: number;
  /**
   * With `pgbouncer: true`: PgBouncer ≥ 1.21 runs with `max_prepared_statements` > 0 and tracks
   * protocol-level prepared statements, so automatic preparation (and `QueryConfig.name`) may stay
   * on. PgBouncer then bounds the server side; the library sends no `DEALLOCATE`. Default: `false`.
   */
  pgbouncerProtocol?: boolean;
}

/**
 * Sizing from observed load. Every pool keeps a rolling view of the last `windowMs` in `buckets`
 * fixed slots, sampled every `sampleIntervalMs` from the numbers the pool records anyway (nothing
 * per query; the peak in use is also taken at every acquire): peak in use and waiting, acquire-wait
 * percentiles, hold time and arrival rate. From the busiest slot it derives a suggested max by
 * Little's law, arrival rate × (mean hold time + mean acquire wait), plus `headroom`, never below
 * the peak in use or `min`, and capped by the start-up sizing advisor's `max_connections` budget.
 * Shown in `GET /metrics/db-pool` (`sizing`), the dashboard and Prometheus. It warns (log line and a
 * `sizing-advice` event) when a pool is persistently saturated or over-provisioned. It only advises:
 * no pool is ever resized by it.
 */
export interface LoadSizingOptions {
  /** Watch the load at all. Default: `true`. */
  enabled?: boolean;
  /** Length of the rolling window (minimum 1000). Default: `60000`. */
  windowMs?: number;
  /** Fixed slots the window is kept in; the suggestion comes from the busiest one. Default: `6` (10 s each). */
  buckets?: number;
  /** How often each pool is sampled (minimum 50, at most one slot). Default: `1000`. */
  sampleIntervalMs?: number;
  /** Share added above the observed load: `0.25` keeps the mean at 80% of the suggested max. Default: `0.25`. */
  headroom?: number;
  /** `saturated` fires when callers were waiting at this share of the window's samples (or more). Default: `0.5`. */
  saturatedShare?: number;
  /**
   * `over-provisioned` fires when, over a whole window, no caller waited, the peak in use stayed at or
   * below this share of max and the suggested max is below max. Default: `0.25`.
   */
  overProvisionedRatio?: number;
  /** Minimum time between two warnings of the same kind for the same pool. Default: `300000` (5 min). */
  cooldownMs?: number;
  /** Log each warning through Nest's `Logger` (context `PoolModule:<database>`); `false` only emits the event. Default: `true`. */
  log?: boolean;
}

/** A value a session setting takes (sent as text). */
export type SessionSettingValue = string | number | boolean;

/**
 * The role and settings every statement of a scope runs with, applied inside a transaction with
 * `set_config(…, true)` (`SET LOCAL` semantics): they end with it, so they hold behind PgBouncer
 * in transaction mode and never outlive the statement's transaction.
 */
export interface SessionContext {
  /** Role the statements run as (`SET LOCAL ROLE`); the login role must be a member of it. */
  role?: string;
  /** Settings such as `{ 'app.tenant_id': 'tenant-A' }` (custom names need a dot). */
  settings?: Readonly<Record<string, SessionSettingValue>>;
  /** Names of settings whose values never appear in logs (added to the module's `session.secret`). */
  secret?: readonly string[];
}

/** The `session` option of `PoolModule`. */
export interface SessionOptions {
  /**
   * The context of an HTTP request, read once, at its first statement (after guards ran, so
   * `req.user` is there). `undefined`: no context.
   */
  fromRequest?: (request: any) => SessionContext | undefined;
  /** Settings whose values are never logged (e.g. `['app.jwt']`). Default: none. */
  secret?: readonly string[];
}

/**
 * When a connection given back is reset before it serves anyone else: `'auto'` after a checkout
 * that sent a statement able to change session state, `'always'` after every checkout of a
 * caller, `'never'` not at all.
 */
export type ResetOnRelease = 'auto' | 'always' | 'never';
