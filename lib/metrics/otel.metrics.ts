import type { Attributes, BatchObservableCallback, Histogram, Meter, MeterProvider, Observable } from '@opentelemetry/api';
import type { Subscription } from 'rxjs';
import type { PoolCluster } from '../core/pool-cluster.js';
import { PoolError } from '../pool.exceptions.js';
import type { ResolvedOpenTelemetryOptions } from './metrics.options.js';
import { nodeViews } from './prometheus.collector.js';

// The pool metrics through OpenTelemetry, under the names and units of the semantic conventions
// for database client connection pools (https://opentelemetry.io/docs/specs/semconv/database/database-metrics/).
// Gauges and counters are observed from the pools when the SDK collects; the three histograms
// record the durations of the pools' connect, acquire and release events.

/** `db.client.connection.pool.name`: `<database>/<node>`, unique within the application. */
export const OTEL_POOL_NAME = 'db.client.connection.pool.name';
export const OTEL_CONNECTION_STATE = 'db.client.connection.state';
export const OTEL_ROUTING_REASON = 'nestjs_pg_pools.routing.reason';
export const OTEL_PREPARED_RESULT = 'nestjs_pg_pools.prepared.result';
export const OTEL_PREPARED_REASON = 'nestjs_pg_pools.prepared.reason';

/** The bucket boundaries (seconds) the semantic conventions advise for the connection durations. */
const DURATION_BUCKETS_S = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10];

export interface OpenTelemetryMetrics {
  /** Removes the callbacks and event subscriptions; the instruments stop reporting. */
  stop(): void;
}

async function providerOf(options: ResolvedOpenTelemetryOptions): Promise<MeterProvider> {
  if (options.meterProvider !== undefined) return options.meterProvider as MeterProvider;
  let api: typeof import('@opentelemetry/api');
  try {
    api = await import('@opentelemetry/api');
  } catch (err) {
    throw new PoolError(
      `Cannot enable metrics.openTelemetry because @opentelemetry/api could not be loaded (${err instanceof Error ? err.message : String(err)}). ` +
        'Please make sure that @opentelemetry/api ^1.9 is installed (npm install @opentelemetry/api), or pass metrics.openTelemetry.meterProvider.',
    );
  }
  return api.metrics.getMeterProvider();
}

/** Creates the instruments on a meter of the configured provider and starts reporting the pools of `clusters()`. */
export async function startOpenTelemetryMetrics(options: ResolvedOpenTelemetryOptions, clusters: () => readonly PoolCluster[]): Promise<OpenTelemetryMetrics> {
  const meter: Meter = (await providerOf(options)).getMeter(options.meterName);
  const connections = (name: string, description: string) => meter.createObservableUpDownCounter(name, { unit: '{connection}', description });
  const count = connections('db.client.connection.count', 'The number of connections that are currently in the state described by the state attribute.');
  const idleMax = connections('db.client.connection.idle.max', 'The maximum number of idle open connections allowed.');
  const idleMin = connections('db.client.connection.idle.min', 'The minimum number of idle open connections allowed.');
  const max = connections('db.client.connection.max', 'The maximum number of open connections allowed.');
  const pending = meter.createObservableUpDownCounter('db.client.connection.pending_requests', {
    unit: '{request}',
    description: 'The number of current pending requests for an open connection.',
  });
  const timeouts = meter.createObservableCounter('db.client.connection.timeouts', {
    unit: '{timeout}',
    description: 'The number of connection timeouts that have occurred trying to obtain a connection from the pool.',
  });
  const statements = (name: string, description: string) => meter.createObservableCounter(name, { unit: '{statement}', description });
  const routing = statements(
    'nestjs_pg_pools.routing.statements',
    'Statements routed to a node, by reason: read or write (disjoint); fallback and retry are the reads among them that fell back to the primary or were retried there.',
  );
  const prepared = statements(
    'nestjs_pg_pools.prepared_statements',
    "Parameterized statements by result: hit (run from the connection's prepared-statement cache) or miss (sent unprepared, or prepared by this send).",
  );
  const dropped = statements(
    'nestjs_pg_pools.prepared_statements.dropped',
    'Automatically prepared statements dropped, by reason: eviction (cache full, deallocated) or invalidation (the server refused the plan).',
  );
  const lag = meter.createObservableGauge('nestjs_pg_pools.replica.lag', { unit: 's', description: 'Replay lag of a replica behind the primary at the last lag check.' });
  const duration = (name: string, description: string): Histogram =>
    meter.createHistogram(name, { unit: 's', description, advice: { explicitBucketBoundaries: DURATION_BUCKETS_S } });
  const createTime = duration('db.client.connection.create_time', 'The time it took to create a new connection.');
  const waitTime = duration('db.client.connection.wait_time', 'The time it took to obtain an open connection from the pool.');
  const useTime = duration('db.client.connection.use_time', 'The time between borrowing a connection and returning it to the pool.');

  // One attribute object per pool (and state), made once: nothing is allocated per observation.
  const attributeCache = new Map<string, Attributes>();
  const attributes = (poolName: string, key = '', extra?: Attributes): Attributes => {
    const cacheKey = `${poolName}\u0000${key}`;
    let found = attributeCache.get(cacheKey);
    if (found === undefined) {
      found = Object.freeze({ [OTEL_POOL_NAME]: poolName, ...extra });
      attributeCache.set(cacheKey, found);
    }
    return found;
  };

  const observables: Observable[] = [count, idleMax, idleMin, max, pending, timeouts, routing, lag, prepared, dropped];
  const observe: BatchObservableCallback = (result) => {
    for (const { node, replica, labels } of nodeViews(clusters())) {
      const pool = `${labels.database}/${labels.node}`;
      const state = node.state();
      result.observe(count, state.idle, attributes(pool, 'idle', { [OTEL_CONNECTION_STATE]: 'idle' }));
      result.observe(count, state.inUse, attributes(pool, 'used', { [OTEL_CONNECTION_STATE]: 'used' }));
      result.observe(pending, state.waiting, attributes(pool));
      result.observe(idleMax, node.config.max, attributes(pool));
      result.observe(idleMin, node.config.min, attributes(pool));
      result.observe(max, node.config.max, attributes(pool));
      result.observe(timeouts, node.counters.acquireTimeouts, attributes(pool));
      const c = node.counters;
      for (const [reason, value] of [['read', c.routedReads], ['write', c.routedWrites], ['fallback', c.fallbacks], ['retry', c.retries]] as const) {
        result.observe(routing, value, attributes(pool, reason, { [OTEL_ROUTING_REASON]: reason }));
      }
      for (const [key, value] of [['hit', c.preparedHits], ['miss', c.preparedMisses]] as const) {
        result.observe(prepared, value, attributes(pool, `prepared:${key}`, { [OTEL_PREPARED_RESULT]: key }));
      }
      for (const [key, value] of [['eviction', c.preparedEvictions], ['invalidation', c.preparedInvalidations]] as const) {
        result.observe(dropped, value, attributes(pool, `dropped:${key}`, { [OTEL_PREPARED_REASON]: key }));
      }
      if (replica?.lagMs !== undefined) result.observe(lag, replica.lagMs / 1000, attributes(pool));
    }
  };
  meter.addBatchObservableCallback(observe, observables);

  const subscriptions: Subscription[] = clusters().map((cluster) =>
    cluster.events$.subscribe((event) => {
      switch (event.type) {
        case 'connect':
          createTime.record(event.durationMs / 1000, attributes(`${event.database}/${event.node}`));
          break;
        case 'acquire':
          waitTime.record(event.waitMs / 1000, attributes(`${event.database}/${event.node}`));
          break;
        case 'release':
          useTime.record(event.heldMs / 1000, attributes(`${event.database}/${event.node}`));
          break;
        default:
          break;
      }
    }),
  );

  return {
    stop() {
      meter.removeBatchObservableCallback(observe, observables);
      for (const s of subscriptions) s.unsubscribe();
    },
  };
}
