import type { PoolClient, PoolConfig } from 'pg';
import type { ConnectContext, NodeRole, PoolPreset, ReadConsistency, ReadOnlyInTransaction, ReplicaSelector, RoutingStrategy } from '../pool.interfaces.js';
import type { ResetOnRelease } from './reset-modes.js';
import type { SessionOptions } from '../session/session-context.js';
import type { ResolvedAlertOptions, ResolvedMetricsOptions } from '../metrics/metrics.options.js';
import type { ResolvedLoadSizingOptions } from '../metrics/sizing.options.js';
import type { ResolvedPreparedStatements } from './prepared-statements.options.js';

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
