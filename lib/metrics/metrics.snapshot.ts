import type { NodePool } from '../pool/node-pool.js';
import { LATENCY_BUCKETS_MS, type LatencyHistogram } from '../pool/node-stats.js';
import type { ReaderState } from '../routing/reader-state.js';
import type { PoolCluster } from '../core/pool-cluster.js';
import type { NodeRole, PoolPreset } from '../pool.interfaces.js';
import type { TopologyRole } from '../pool.events.js';
import type { TopologySnapshot } from '../cluster/topology.js';
import { sizingOf, type NodeSizing } from './sizing.monitor.js';

/** Latency of one kind of operation since start, in milliseconds (percentiles at bucket resolution, capped at max). */
export interface LatencySummary {
  count: number;
  mean: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
  /** Count per bucket of `latencyBucketsMs` (not cumulative), for windowed percentiles. */
  buckets: number[];
}

export interface NodeCountersSnapshot {
  acquired: number;
  released: number;
  created: number;
  removed: number;
  acquireTimeouts: number;
  connectionErrors: number;
  /** Connects refused because the server had no connection slot left (53300, 53400). */
  serverFull: number;
  idleErrors: number;
  validationFailures: number;
  leaks: number;
  evictions: number;
  rollbacksOnRelease: number;
  queries: number;
  queryErrors: number;
  slowQueries: number;
  routedReads: number;
  routedWrites: number;
  fallbacks: number;
  /** Reads of a scope that wrote, sent to the most caught-up replica because the primary's WAL position could not be fetched (primary only). */
  rywUnverified: number;
  retries: number;
  bans: number;
  breakerOpens: number;
  /** acquireTimeouts + connectionErrors + idleErrors + validationFailures + queryErrors. */
  errors: number;
  /** Automatic prepared statements: statements run from a connection's cache. */
  preparedHits: number;
  /** Parameterized statements sent while not in the cache (below the threshold, or being prepared). */
  preparedMisses: number;
  /** Prepared statements deallocated to keep a connection's cache within `cacheSize`. */
  preparedEvictions: number;
  /** Prepared statements dropped because the server refused their plan (0A000 after a schema change, 26000). */
  preparedInvalidations: number;
}

export interface NodeSnapshot {
  role: NodeRole;
  /** The role the role checks found: `primary` (takes the writes), `replica`, `fenced` (split brain) or `unknown`. */
  topologyRole: TopologyRole;
  /** `host:port`, never with credentials. */
  address: string;
  /** Open connections (`pg.Pool#totalCount`). */
  size: number;
  /** Idle connections (`pg.Pool#idleCount`); `free` is the same number. */
  idle: number;
  free: number;
  /** Checked-out connections (size - idle); `used` is the same number. */
  inUse: number;
  used: number;
  /** Callers waiting for a connection (`pg.Pool#waitingCount`). */
  waiting: number;
  min: number;
  max: number;
  /** inUse / max. */
  usage: number;
  /** Routable now: breaker not open and, for a replica, not banned. */
  available: boolean;
  breaker: { state: 'closed' | 'open' | 'half-open'; retryAt: number | null };
  banned: boolean;
  bannedUntil: number | null;
  banReason: string | null;
  /** Replica replay lag (ms / WAL bytes) at the last check; `null` for the primary or before the first check. */
  lagMs: number | null;
  lagBytes: number | null;
  lagCheckedAt: number | null;
  acquireMs: LatencySummary;
  queryMs: LatencySummary;
  usageMs: LatencySummary;
  connectMs: LatencySummary;
  counters: NodeCountersSnapshot;
  /** The rolling view of the observed load and the suggested max; `null` with `loadSizing.enabled: false`. */
  sizing: NodeSizing | null;
}

export interface DatabaseSnapshot {
  preset: PoolPreset;
  strategy: string;
  fallbackToPrimary: boolean;
  maxReplicationLagMs: number;
  /** Which node is the primary now and since when, every node's discovered role, fenced nodes. */
  topology: TopologySnapshot;
  /** Keyed by node name: the primary (the node taking the writes now) first, then the others in configuration order. */
  nodes: Record<string, NodeSnapshot>;
}

/** The body of `GET /metrics/db-pool`. */
export interface PoolMetricsSnapshot {
  /** `Date.now()` when the snapshot was taken. */
  at: number;
  /** Upper bounds (ms) of the latency buckets; the last one (`null`) is +Inf. */
  latencyBucketsMs: Array<number | null>;
  databases: Record<string, DatabaseSnapshot>;
}

const BUCKET_BOUNDS: Array<number | null> = LATENCY_BUCKETS_MS.map((b) => (Number.isFinite(b) ? b : null));

function round(value: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

export function summarizeLatency(h: LatencyHistogram): LatencySummary {
  return {
    count: h.count,
    mean: h.count === 0 ? 0 : round(h.sumMs / h.count),
    p50: round(Math.min(h.percentile(50), h.maxMs)),
    p95: round(Math.min(h.percentile(95), h.maxMs)),
    p99: round(Math.min(h.percentile(99), h.maxMs)),
    max: round(h.maxMs),
    buckets: h.counts.slice(),
  };
}

function counters(node: NodePool): NodeCountersSnapshot {
  const c = node.counters;
  return {
    acquired: c.acquired,
    released: c.released,
    created: c.created,
    removed: c.removed,
    acquireTimeouts: c.acquireTimeouts,
    connectionErrors: c.connectionErrors,
    serverFull: c.serverFull,
    idleErrors: c.idleErrors,
    validationFailures: c.validationFailures,
    leaks: c.leaks,
    evictions: c.evictions,
    rollbacksOnRelease: c.rollbacksOnRelease,
    queries: c.queries,
    queryErrors: c.queryErrors,
    slowQueries: c.slowQueries,
    routedReads: c.routedReads,
    routedWrites: c.routedWrites,
    fallbacks: c.fallbacks,
    rywUnverified: c.rywUnverified,
    retries: c.retries,
    bans: c.bans,
    breakerOpens: c.breakerOpens,
    errors: c.acquireTimeouts + c.connectionErrors + c.idleErrors + c.validationFailures + c.queryErrors,
    preparedHits: c.preparedHits,
    preparedMisses: c.preparedMisses,
    preparedEvictions: c.preparedEvictions,
    preparedInvalidations: c.preparedInvalidations,
  };
}

export function snapshotNode(node: NodePool, replica: ReaderState | undefined, topologyRole: TopologyRole = node.role): NodeSnapshot {
  const status = node.status();
  const banned = replica !== undefined && replica.bannedUntil !== 0;
  return {
    role: node.role,
    topologyRole,
    address: node.config.address,
    size: status.total,
    idle: status.idle,
    free: status.idle,
    inUse: status.inUse,
    used: status.inUse,
    waiting: status.waiting,
    min: status.min,
    max: status.max,
    usage: status.max > 0 ? round(status.inUse / status.max, 4) : 0,
    available: !banned && node.available,
    breaker: { state: status.breaker, retryAt: status.breakerRetryAt ?? null },
    banned,
    bannedUntil: banned ? replica.bannedUntil : null,
    banReason: banned && replica.banReason ? replica.banReason : null,
    lagMs: replica?.reportedLagMs === undefined ? null : round(replica.reportedLagMs),
    lagBytes: replica?.lagBytes ?? null,
    lagCheckedAt: replica !== undefined && replica.lastCheckedAt !== 0 ? replica.lastCheckedAt : null,
    acquireMs: summarizeLatency(node.acquireTime),
    queryMs: summarizeLatency(node.queryTime),
    usageMs: summarizeLatency(node.usageTime),
    connectMs: summarizeLatency(node.connectTime),
    counters: counters(node),
    sizing: sizingOf(node),
  };
}

export function snapshotDatabase(cluster: PoolCluster): DatabaseSnapshot {
  const nodes: Record<string, NodeSnapshot> = { [cluster.primary.name]: snapshotNode(cluster.primary, undefined, 'primary') };
  for (const node of cluster.nodes) {
    if (node === cluster.primary) continue;
    nodes[node.name] = snapshotNode(node, cluster.replicas.find((r) => r.node === node), cluster.topology.roleOf(node));
  }
  const routing = cluster.options.routing;
  return {
    preset: cluster.options.preset,
    strategy: typeof routing.strategy === 'function' ? 'custom' : routing.strategy,
    fallbackToPrimary: routing.fallbackToPrimary,
    maxReplicationLagMs: routing.maxReplicationLagMs,
    topology: cluster.topology.snapshot(),
    nodes,
  };
}

/** Live state of every pool, read at call time: O(1) per node apart from the bucket copies. */
export function snapshotPools(clusters: readonly PoolCluster[], now = Date.now()): PoolMetricsSnapshot {
  const databases: Record<string, DatabaseSnapshot> = {};
  for (const cluster of clusters) {
    if (!cluster.closed) databases[cluster.name] = snapshotDatabase(cluster);
  }
  return { at: now, latencyBucketsMs: BUCKET_BOUNDS, databases };
}
