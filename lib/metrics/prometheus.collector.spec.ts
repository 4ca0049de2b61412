import { Registry, type OpenMetricsContentType } from 'prom-client';
import { resolveOptions } from '../config/resolve-options.js';
import { PoolCluster } from '../core/pool-cluster.js';
import { PoolError } from '../pool.exceptions.js';
import { POOL_METRIC_NAMES, registerPoolMetrics } from './prometheus.collector.js';
import { snapshotPools } from './metrics.snapshot.js';
import { SizingMonitor } from './sizing.monitor.js';

// Real PoolCluster objects that never connect (nothing is warmed up): counters and histograms are
// set by hand, then read through prom-client's own formatter and the JSON snapshot.

function makeCluster(name = 'default'): PoolCluster {
  return new PoolCluster(
    resolveOptions(
      {
        primary: { host: '127.0.0.1', port: 1, user: 'u', password: 'collector-secret-pw', database: 'd' },
        replicas: [{ host: '127.0.0.1', port: 2, user: 'u', password: 'collector-secret-pw', database: 'd', name: 'r"1' }],
        preset: 'test',
        env: {},
      },
      name,
    ),
  );
}

describe('registerPoolMetrics', () => {
  let cluster: PoolCluster;

  beforeEach(() => {
    cluster = makeCluster();
  });

  afterEach(async () => {
    await cluster.close();
  });

  it('formats every metric with database/node/role labels and escapes label values', async () => {
    const registry = new Registry();
    registerPoolMetrics(registry, () => [cluster]);
    const text = await registry.metrics();
    for (const name of POOL_METRIC_NAMES) expect(text).toContain(`# TYPE ${name} `);
    expect(text).toContain('db_pool_connections{database="default",node="primary",role="primary",state="idle"} 0');
    expect(text).toContain('db_pool_max{database="default",node="r\\"1",role="replica"} 5');
    expect(text).not.toContain('collector-secret-pw');
  });

  it('turns the node histograms into cumulative second buckets at scrape time', async () => {
    const registry = new Registry();
    registerPoolMetrics(registry, () => [cluster]);
    cluster.primary.acquireTime.record(0.3);
    cluster.primary.acquireTime.record(3);
    cluster.primary.acquireTime.record(20_000);
    const text = await registry.metrics();
    const line = (le: string) => new RegExp(`db_pool_acquire_seconds_bucket\\{database="default",node="primary",role="primary",le="${le.replace('+', '\\+')}"\\} (\\d+)`).exec(text)?.[1];
    expect(line('0.00025')).toBe('0');
    expect(line('0.0005')).toBe('1');
    expect(line('0.005')).toBe('2');
    expect(line('10')).toBe('2');
    expect(line('+Inf')).toBe('3');
    expect(text).toMatch(/db_pool_acquire_seconds_count\{database="default",node="primary",role="primary"\} 3/);
    expect(text).toMatch(/db_pool_acquire_seconds_sum\{database="default",node="primary",role="primary"\} 20\.0033/);
  });

  it('reads counters live: routing by reason, errors by kind', async () => {
    const registry = new Registry();
    registerPoolMetrics(registry, () => [cluster]);
    const replica = cluster.replicas[0]!;
    replica.node.counters.routedReads = 7;
    replica.node.counters.retries = 1;
    cluster.primary.counters.routedWrites = 3;
    cluster.primary.counters.fallbacks = 2;
    cluster.primary.counters.connectionErrors = 4;
    replica.bannedUntil = Date.now() + 1000;
    replica.lagMs = 1500;
    replica.lastCheckedAt = Date.now();
    replica.lagBytes = 2048;
    const text = await registry.metrics();
    expect(text).toContain('db_routing_total{database="default",node="r\\"1",role="replica",reason="read"} 7');
    expect(text).toContain('db_routing_total{database="default",node="r\\"1",role="replica",reason="retry"} 1');
    expect(text).toContain('db_routing_total{database="default",node="primary",role="primary",reason="write"} 3');
    expect(text).toContain('db_routing_total{database="default",node="primary",role="primary",reason="fallback"} 2');
    expect(text).toContain('db_pool_errors_total{database="default",node="primary",role="primary",kind="connection"} 4');
    expect(text).toContain('db_replica_banned{database="default",node="r\\"1",role="replica"} 1');
    expect(text).toContain('db_replica_lag_seconds{database="default",node="r\\"1",role="replica"} 1.5');
    expect(text).toContain('db_replica_lag_bytes{database="default",node="r\\"1",role="replica"} 2048');
    expect(text).not.toMatch(/db_replica_lag_seconds\{[^}]*role="primary"/);
    replica.bannedUntil = 0;
  });

  it('replaces its own metrics left in a shared registry, refuses foreign ones, and unregisters', async () => {
    const registry = new Registry();
    const first = registerPoolMetrics(registry, () => [cluster]);
    const second = registerPoolMetrics(registry, () => [cluster]);
    expect(registry.getSingleMetric('db_pool_max')).toBeDefined();
    first.unregister();
    expect(registry.getSingleMetric('db_pool_max')).toBeDefined();
    second.unregister();
    expect(registry.getMetricsAsArray()).toHaveLength(0);

    const { Gauge } = await import('prom-client');
    new Gauge({ name: 'db_pool_max', help: 'someone else', registers: [registry] });
    expect(() => registerPoolMetrics(registry, () => [cluster])).toThrow(PoolError);
    expect(() => registerPoolMetrics(registry, () => [cluster])).toThrow(/Cannot register the metric db_pool_max because the given registry already has a metric with that name/);
  });

  it('works with an OpenMetrics registry (counter names get _total once)', async () => {
    const registry = new Registry<OpenMetricsContentType>();
    registry.setContentType(Registry.OPENMETRICS_CONTENT_TYPE);
    const registration = registerPoolMetrics(registry, () => [cluster]);
    const text = await registry.metrics();
    expect(text).toContain('# TYPE db_routing counter');
    expect(text).toContain('db_routing_total{database="default",node="primary",role="primary",reason="read"} 0');
    expect(text.trimEnd().endsWith('# EOF')).toBe(true);
    registration.unregister();
    expect(registry.getMetricsAsArray()).toHaveLength(0);
  });

  it('skips closed databases', async () => {
    const other = makeCluster('analytics');
    const registry = new Registry();
    registerPoolMetrics(registry, () => [cluster, other]);
    expect(await registry.metrics()).toContain('database="analytics"');
    await other.close();
    expect(await registry.metrics()).not.toContain('database="analytics"');
    expect(Object.keys(snapshotPools([cluster, other]).databases)).toEqual(['default']);
  });
});

describe('snapshotPools', () => {
  it('reports pool counts, sizing, percentiles and counters per node', async () => {
    const cluster = makeCluster();
    try {
      cluster.primary.acquireTime.record(0.2);
      cluster.primary.acquireTime.record(40);
      cluster.primary.counters.acquireTimeouts = 1;
      cluster.primary.counters.queryErrors = 2;
      const snap = snapshotPools([cluster], 1234);
      expect(snap.at).toBe(1234);
      expect(snap.latencyBucketsMs.at(-1)).toBeNull();
      const primary = snap.databases.default!.nodes.primary!;
      expect(primary).toMatchObject({ role: 'primary', address: '127.0.0.1:1', size: 0, idle: 0, free: 0, inUse: 0, used: 0, waiting: 0, min: 2, max: 5, usage: 0, lagMs: null, banned: false, available: true });
      expect(primary.acquireMs).toMatchObject({ count: 2, p50: 0.25, p95: 40, p99: 40, max: 40 });
      expect(primary.acquireMs.buckets.reduce((a, b) => a + b, 0)).toBe(2);
      expect(primary.counters.errors).toBe(3);
      expect(JSON.stringify(snap)).not.toContain('collector-secret-pw');
      expect(snap.databases.default!.nodes['r"1']).toMatchObject({ role: 'replica', lagMs: null, banned: false });
    } finally {
      await cluster.close();
    }
  });
});

describe('load sizing in the snapshot and in Prometheus', () => {
  it('shows the suggested max, capped by the budget, and the advice gauges of a watched database', async () => {
    const cluster = makeCluster();
    const t0 = Date.now();
    const monitor = new SizingMonitor(cluster, new Map([['127.0.0.1:1', 3]]), t0 - 2000);
    try {
      // One second of 100 acquisitions, each waited 10 ms and held 40 ms: λ × (W + Wq) = 100/s × 50 ms = 5.
      for (let i = 0; i < 100; i++) {
        cluster.primary.counters.acquired++;
        cluster.primary.acquireTime.record(10);
        cluster.primary.usageTime.record(40);
      }
      monitor.sample(t0 - 1000);
      const sizing = snapshotPools([cluster]).databases.default!.nodes.primary!.sizing!;
      expect(sizing.busiest).toMatchObject({ arrivalPerSec: 100, meanUsageMs: 40, meanAcquireMs: 10, load: 5 });
      // ceil(5 × 1.25) = 7 is above the advisor's 3 per pool on that server.
      expect(sizing).toMatchObject({ suggestedMax: 3, budgetMax: 3, limitedByBudget: true, max: 5, advice: 'warming-up' });
      expect(snapshotPools([cluster]).databases.default!.nodes['r"1']!.sizing).toMatchObject({ suggestedMax: 2, budgetMax: null, busiest: { load: 0 } });
      const registry = new Registry();
      registerPoolMetrics(registry, () => [cluster]);
      const text = await registry.metrics();
      expect(text).toContain('db_pool_suggested_max{database="default",node="primary",role="primary"} 3');
      expect(text).toContain('db_pool_offered_load{database="default",node="primary",role="primary"} 5');
      expect(text).toContain('db_pool_window_peak_in_use{database="default",node="primary",role="primary"} 0');
      expect(text).toContain('db_pool_sizing_advice{database="default",node="primary",role="primary",advice="saturated"} 0');
      expect(text).toContain('db_pool_sizing_advice{database="default",node="primary",role="primary",advice="over-provisioned"} 0');
      monitor.stop();
      expect(snapshotPools([cluster]).databases.default!.nodes.primary!.sizing).toBeNull();
      expect(await registry.metrics()).not.toContain('db_pool_suggested_max{');
    } finally {
      monitor.stop();
      await cluster.close();
    }
  });
});
