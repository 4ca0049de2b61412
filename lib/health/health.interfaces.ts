import type { TopologySnapshot } from '../cluster/topology.js';
import type { NodeRole } from '../pool.interfaces.js';

/** Options of `PoolHealthIndicator.pingCheck()`. */
export interface PoolPingCheckOptions {
  /** Database to check (the `name` given to `PoolModule.forRoot`). Default: the default database. */
  database?: string;
  /** Node to ping: `primary` (the primary, whatever its name) or a node name such as `replica-1`. Default: `primary`. */
  node?: string;
  /** A ping that takes longer reports `down` with `timeout of <n>ms exceeded`. Default: `1000`. */
  timeoutMs?: number;
}

/** Options of `PoolHealthIndicator.check()`. */
export interface PoolHealthCheckOptions {
  /** Database to check (the `name` given to `PoolModule.forRoot`). Default: the default database. */
  database?: string;
  /** Per-node ping timeout; the nodes are pinged in parallel. Default: `1000`. */
  timeoutMs?: number;
  /**
   * Healthy replicas the check needs to stay `up`: `false` none (a replica down only marks the
   * check `degraded: true`), `true` every configured replica, a number at least that many.
   * The primary is always required. Default: `false`.
   */
  requireReplicas?: boolean | number;
}

/** Pool counts of one node at the time of the check. */
export interface NodePoolCounts {
  /** Open connections. */
  total: number;
  idle: number;
  inUse: number;
  /** Callers waiting for a connection. */
  waiting: number;
  min: number;
  max: number;
}

/** What the check reports for one node. */
export interface NodeHealth {
  status: 'up' | 'down';
  role: NodeRole;
  /** `host:port`, never with credentials. */
  address: string;
  /** Round trip of the ping (`SELECT 1` through the node's pool), or time until it failed. */
  latencyMs: number;
  /** Why the node is down. */
  message?: string;
  pool: NodePoolCounts;
  /** The node's circuit breaker: `open` fails fast, `half-open` lets one trial through. */
  breaker: 'closed' | 'open' | 'half-open';
  /** When an open breaker lets the next trial through (ISO 8601). */
  breakerRetryAt?: string;
  /** Replicas: last replication lag measured by the lag monitor; `null` when unknown (not measured yet, or the replica is down). */
  replicationLagMs?: number | null;
  /** Replicas: taken out of rotation after a connection failure, until a background probe succeeds. */
  banned?: boolean;
  /** Replicas: end of the current ban (ISO 8601). */
  bannedUntil?: string;
  /** Replicas: the failure that caused the ban. */
  banReason?: string;
  /** Replicas: reads may be routed here now (up, not banned, breaker not open, lag within `maxReplicationLagMs`). */
  inRotation?: boolean;
}

/** Details of `check()` under its key. */
export interface DatabaseHealth {
  status: 'up' | 'down';
  database: string;
  /** `true` when a replica is down or out of rotation while the check is still `up`. */
  degraded: boolean;
  /** Why the check is down or degraded. */
  message?: string;
  replicas: { total: number; healthy: number; required: number };
  /** Every node by name: the primary first, then the replicas in configuration order. */
  nodes: Record<string, NodeHealth>;
  /** Which node is the primary now and since when, every node's discovered role, fenced nodes. */
  topology: TopologySnapshot;
}

/** Details of `pingCheck()` under its key. */
export interface NodePingHealth extends NodeHealth {
  database: string;
  node: string;
}

/** Details when the check itself could not run: an invalid option, an unknown database or node, closed pools. */
export interface HealthCheckFailure {
  status: 'down';
  database: string;
  message: string;
}

/** A Terminus `HealthIndicatorResult`: the details under the indicator key. */
export type PoolHealthResult<Key extends string, Details> = { [K in Key]: Details };
