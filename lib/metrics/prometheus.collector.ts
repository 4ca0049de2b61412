import type { Registry, RegistryContentType } from 'prom-client';
import type { NodePool } from '../pool/node-pool.js';
import { LATENCY_BUCKETS_MS, type LatencyHistogram } from '../pool/node-stats.js';
import type { ReaderState } from '../routing/reader-state.js';
import type { PoolCluster } from '../core/pool-cluster.js';
import { PoolError } from '../pool.exceptions.js';
import type { TopologyRole } from '../pool.events.js';
import { sizingOf } from './sizing.monitor.js';

type MetricType = 'gauge' | 'counter' | 'histogram';
type Labels = Record<string, string>;

interface MetricValue {
  labels: Labels;
  value: number;
  metricName?: string;
}

/** One node as the collectors see it. */
export interface NodeView {
  node: NodePool;
  replica: ReaderState | undefined;
  labels: Labels;
  /** What the role checks found (`labels.role` is the pool's role: primary or replica). */
  topologyRole: TopologyRole;
}

const TOPOLOGY_ROLES: readonly TopologyRole[] = ['primary', 'replica', 'fenced', 'unknown'];

const OWNED = Symbol.for('nestjs-pg-pools.metric');

/** Bucket bounds in seconds, formatted once (`0.00005`, not `5.0000000000000002e-5`). */
const LE_SECONDS = LATENCY_BUCKETS_MS.map((ms) => (Number.isFinite(ms) ? String(Number((ms / 1000).toPrecision(6))) : '+Inf'));

/**
 * A prom-client metric whose values are read from the pools when the registry is scraped:
 * nothing is recorded per query here, the pools already count. prom-client formats it.
 */
class ScrapeMetric {
  readonly [OWNED] = true;
  constructor(
    public name: string,
    readonly help: string,
    readonly type: MetricType,
    private readonly read: (push: (labels: Labels, value: number, metricName?: string) => void) => void,
    readonly aggregator: 'sum' | 'max' | 'first' = 'sum',
  ) {}

  get(): { name: string; help: string; type: MetricType; values: MetricValue[]; aggregator: string } {
    const values: MetricValue[] = [];
    this.read((labels, value, metricName) => values.push(metricName === undefined ? { labels, value } : { labels, value, metricName }));
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }

  reset(): void {}
}

function histogramValues(name: string, h: LatencyHistogram, labels: Labels, push: (labels: Labels, value: number, metricName?: string) => void): void {
  let cumulative = 0;
  for (let i = 0; i < h.counts.length; i++) {
    cumulative += h.counts[i]!;
    push({ ...labels, le: LE_SECONDS[i]! }, cumulative, `${name}_bucket`);
  }
  push(labels, h.sumMs / 1000, `${name}_sum`);
  push(labels, h.count, `${name}_count`);
}

/** Name, type and help of every metric, as documented in docs/observability.md. */
export const POOL_METRIC_NAMES = [
  'db_pool_connections',
  'db_pool_max',
  'db_pool_min',
  'db_pool_breaker_open',
  'db_replica_banned',
  'db_replica_lag_seconds',
  'db_replica_lag_bytes',
  'db_pool_acquire_seconds',
  'db_pool_usage_seconds',
  'db_pool_connection_creation_seconds',
  'db_query_duration_seconds',
  'db_pool_acquire_timeouts_total',
  'db_pool_errors_total',
  'db_pool_leaks_total',
  'db_routing_total',
  'db_pool_evictions_total',
  'db_pool_slow_queries_total',
  'db_pool_breaker_opens_total',
  'db_replica_bans_total',
  'db_node_role',
  'db_pool_suggested_max',
  'db_pool_window_peak_in_use',
  'db_pool_offered_load',
  'db_pool_sizing_advice',
  'db_prepared_statements_total',
  'db_prepared_statements_dropped_total',
] as const;

const SIZING_ADVICE = ['saturated', 'over-provisioned'] as const;

function buildMetrics(views: () => NodeView[]): ScrapeMetric[] {
  const gauge = (name: string, help: string, fn: (v: NodeView, push: (labels: Labels, value: number) => void) => void, aggregator: 'sum' | 'max' | 'first' = 'sum') =>
    new ScrapeMetric(name, help, 'gauge', (push) => {
      for (const v of views()) fn(v, push);
    }, aggregator);
  const counter = (name: string, help: string, fn: (v: NodeView, push: (labels: Labels, value: number) => void) => void) =>
    new ScrapeMetric(name, help, 'counter', (push) => {
      for (const v of views()) fn(v, push);
    });
  const histogram = (name: string, help: string, pick: (n: NodePool) => LatencyHistogram) =>
    new ScrapeMetric(name, help, 'histogram', (push) => {
      for (const v of views()) histogramValues(name, pick(v.node), v.labels, push);
    });

  return [
    gauge('db_pool_connections', 'Connections of a pool by state: idle, active (checked out) and pending (callers waiting for one).', (v, push) => {
      const s = v.node.state();
      push({ ...v.labels, state: 'idle' }, s.idle);
      push({ ...v.labels, state: 'active' }, s.inUse);
      push({ ...v.labels, state: 'pending' }, s.waiting);
    }),
    gauge('db_pool_max', 'Maximum connections of a pool.', (v, push) => push(v.labels, v.node.config.max), 'first'),
    gauge('db_pool_min', 'Minimum connections kept open by a pool.', (v, push) => push(v.labels, v.node.config.min), 'first'),
    gauge('db_pool_breaker_open', '1 while the circuit breaker of a node is open or half-open, else 0.', (v, push) => push(v.labels, v.node.status().breaker === 'closed' ? 0 : 1), 'max'),
    gauge('db_replica_banned', '1 while a replica is banned from read routing after connection failures, else 0.', (v, push) => {
      if (v.replica) push(v.labels, v.replica.bannedUntil !== 0 ? 1 : 0);
    }, 'max'),
    gauge('db_replica_lag_seconds', 'Replay lag of a replica behind the primary at the last lag check, in seconds.', (v, push) => {
      if (v.replica?.reportedLagMs !== undefined) push(v.labels, v.replica.reportedLagMs / 1000);
    }, 'max'),
    gauge('db_replica_lag_bytes', 'WAL bytes a replica has not replayed yet at the last lag check.', (v, push) => {
      if (v.replica?.lagBytes !== undefined) push(v.labels, v.replica.lagBytes);
    }, 'max'),
    histogram('db_pool_acquire_seconds', 'Time callers waited to get a connection (including connect and validation).', (n) => n.acquireTime),
    histogram('db_pool_usage_seconds', 'Time a connection was checked out, from acquire to release.', (n) => n.usageTime),
    histogram('db_pool_connection_creation_seconds', 'Time to open a new physical connection.', (n) => n.connectTime),
    histogram('db_query_duration_seconds', 'Duration of statements run through the library.', (n) => n.queryTime),
    counter('db_pool_acquire_timeouts_total', 'Callers that got no connection within acquireTimeoutMs.', (v, push) => push(v.labels, v.node.counters.acquireTimeouts)),
    counter('db_pool_errors_total', 'Errors by kind: connection, server-full, idle-client, validation, acquire-timeout, query.', (v, push) => {
      const c = v.node.counters;
      push({ ...v.labels, kind: 'connection' }, c.connectionErrors);
      push({ ...v.labels, kind: 'server-full' }, c.serverFull);
      push({ ...v.labels, kind: 'idle-client' }, c.idleErrors);
      push({ ...v.labels, kind: 'validation' }, c.validationFailures);
      push({ ...v.labels, kind: 'acquire-timeout' }, c.acquireTimeouts);
      push({ ...v.labels, kind: 'query' }, c.queryErrors);
    }),
    counter('db_pool_leaks_total', 'Clients held longer than leakDetectionThresholdMs.', (v, push) => push(v.labels, v.node.counters.leaks)),
    counter('db_routing_total', 'Statements routed to a node: reason read or write (disjoint); fallback and retry are the reads among them that fell back to the primary or were retried here.', (v, push) => {
      const c = v.node.counters;
      push({ ...v.labels, reason: 'read' }, c.routedReads);
      push({ ...v.labels, reason: 'write' }, c.routedWrites);
      push({ ...v.labels, reason: 'fallback' }, c.fallbacks);
      push({ ...v.labels, reason: 'retry' }, c.retries);
    }),
    counter('db_routing_ryw_unverified_total', "Reads of a scope that wrote, sent to the most caught-up replica because the primary's WAL position could not be fetched.", (v, push) => {
      if (!v.replica) push(v.labels, v.node.counters.rywUnverified);
    }),
    counter('db_pool_evictions_total', 'Connections retired for lifetime, max uses, eviction after a restart or a failed rollback.', (v, push) => push(v.labels, v.node.counters.evictions)),
    counter('db_pool_slow_queries_total', 'Statements slower than slowQueryMs.', (v, push) => push(v.labels, v.node.counters.slowQueries)),
    counter('db_writes_held_total', 'Writes that waited for a role change (failover.holdWritesMs), by the node they went to; outcome timed-out: no primary within the bound.', (v, push) => {
      const c = v.node.counters;
      push({ ...v.labels, outcome: 'held' }, c.heldWrites);
      push({ ...v.labels, outcome: 'timed-out' }, c.holdTimeouts);
    }),
    counter('db_writes_held_seconds_total', 'Total time held writes waited for a role change.', (v, push) => push(v.labels, v.node.counters.heldWriteMs / 1000)),
    counter('db_pool_breaker_opens_total', 'Times the circuit breaker of a node opened.', (v, push) => push(v.labels, v.node.counters.breakerOpens)),
    counter('db_prepared_statements_total', 'Parameterized statements by result: hit (run from the connection\'s prepared-statement cache) or miss (sent unprepared, or prepared by this send).', (v, push) => {
      push({ ...v.labels, result: 'hit' }, v.node.counters.preparedHits);
      push({ ...v.labels, result: 'miss' }, v.node.counters.preparedMisses);
    }),
    counter('db_prepared_statements_dropped_total', 'Automatically prepared statements dropped, by reason: eviction (cache full, deallocated) or invalidation (the server refused the plan).', (v, push) => {
      push({ ...v.labels, reason: 'eviction' }, v.node.counters.preparedEvictions);
      push({ ...v.labels, reason: 'invalidation' }, v.node.counters.preparedInvalidations);
    }),
    gauge('db_node_role', 'Discovered role of a node (label discovered): 1 for its current role (primary = takes the writes, replica, fenced = a second primary in a split brain, unknown = unreachable former primary), 0 for the others.', (v, push) => {
      for (const discovered of TOPOLOGY_ROLES) push({ ...v.labels, discovered }, v.topologyRole === discovered ? 1 : 0);
    }, 'max'),
    counter('db_replica_bans_total', 'Times a replica was banned from read routing.', (v, push) => {
      if (v.replica) push(v.labels, v.node.counters.bans);
    }),
    gauge('db_pool_suggested_max', 'Max the load of the last loadSizing.windowMs calls for (Little\'s law plus headroom, within the max_connections budget).', (v, push) => {
      const s = sizingOf(v.node);
      if (s?.suggestedMax != null) push(v.labels, s.suggestedMax);
    }, 'max'),
    gauge('db_pool_window_peak_in_use', 'Peak checked-out connections over the last loadSizing.windowMs.', (v, push) => {
      const s = sizingOf(v.node);
      if (s != null) push(v.labels, s.peakInUse);
    }, 'max'),
    gauge('db_pool_offered_load', 'Arrival rate × (mean hold + mean acquire wait) of the busiest slot of the window, in connections.', (v, push) => {
      const s = sizingOf(v.node);
      if (s != null) push(v.labels, s.busiest?.load ?? 0);
    }, 'max'),
    gauge('db_pool_sizing_advice', '1 while the load sizing advice of a pool is saturated or over-provisioned (label advice), else 0.', (v, push) => {
      const s = sizingOf(v.node);
      if (s != null) for (const advice of SIZING_ADVICE) push({ ...v.labels, advice }, s.advice === advice ? 1 : 0);
    }, 'max'),
  ];
}

/** Every node of the open `clusters`, with its Prometheus labels (also read by the OpenTelemetry metrics). */
export function nodeViews(clusters: readonly PoolCluster[]): NodeView[] {
  const views: NodeView[] = [];
  for (const cluster of clusters) {
    if (cluster.closed) continue;
    const database = cluster.name;
    const writer = cluster.primary;
    views.push({ node: writer, replica: undefined, labels: { database, node: writer.name, role: 'primary' }, topologyRole: 'primary' });
    for (const node of cluster.nodes) {
      if (node === writer) continue;
      const replica = cluster.replicas.find((r) => r.node === node);
      views.push({ node, replica, labels: { database, node: node.name, role: 'replica' }, topologyRole: cluster.topology.roleOf(node) });
    }
  }
  return views;
}

/** The `db_*` metrics registered in one registry; `unregister()` takes them out again. */
export interface PoolMetricsRegistration {
  readonly registry: Registry<RegistryContentType>;
  unregister(): void;
}

/**
 * Registers the `db_*` metrics of `clusters()` in `registry`. Values are read at scrape time.
 * A metric left by an earlier application in the same registry is replaced; a foreign metric
 * with the same name is an error.
 */
export function registerPoolMetrics(registry: Registry<RegistryContentType>, clusters: () => readonly PoolCluster[]): PoolMetricsRegistration {
  const metrics = buildMetrics(() => nodeViews(clusters()));
  for (const metric of metrics) {
    const existing = registry.getSingleMetric(metric.name) as unknown as Record<symbol, unknown> | undefined;
    if (existing !== undefined) {
      if (existing[OWNED] !== true) {
        throw new PoolError(
          `Cannot register the metric ${metric.name} because the given registry already has a metric with that name. ` +
            'Please make sure that no other code registers db_* metrics in it, or pass another registry in metrics.registry.',
        );
      }
      registry.removeSingleMetric(metric.name);
    }
    registry.registerMetric(metric as unknown as Parameters<Registry['registerMetric']>[0]);
  }
  const names = metrics.map((m) => m.name);
  return {
    registry,
    unregister() {
      metrics.forEach((metric, i) => {
        if ((registry.getSingleMetric(names[i]!) as unknown) === metric) registry.removeSingleMetric(names[i]!);
      });
    },
  };
}
