import { jest } from '@jest/globals';
import { Test, type TestingModule } from '@nestjs/testing';
import { metrics as otelMetrics } from '@opentelemetry/api';
import {
  AggregationTemporality,
  DataPointType,
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
  type MetricData,
} from '@opentelemetry/sdk-metrics';
import type { Pool } from 'pg';
import { DatabaseService, PoolAcquireTimeoutError, PoolModule, getPoolToken, type PoolModuleRootOptions } from 'nestjs-pg-pools';
import { nodeOptions, replicaOptions } from '../support/cluster.js';
import { poolSessionCounts } from '../support/foundation-db.js';

// The pool metrics through the real OpenTelemetry SDK (@opentelemetry/sdk-metrics), exported to
// an in-memory exporter, against the real cluster.
jest.setTimeout(20_000);

const APP = 'otel-metrics';
const POOL = 'db.client.connection.pool.name';

let seq = 0;
const running: TestingModule[] = [];
const providers: MeterProvider[] = [];

afterEach(async () => {
  for (const app of running.splice(0)) await app.close();
  for (const provider of providers.splice(0)) await provider.shutdown();
  otelMetrics.disable();
});

/** An SDK MeterProvider whose reader exports to memory only when `collect()` asks. */
function sdk(): { provider: MeterProvider; collect(): Promise<Map<string, MetricData>> } {
  const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
  const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 3_600_000 });
  const provider = new MeterProvider({ readers: [reader] });
  providers.push(provider);
  return {
    provider,
    async collect() {
      exporter.reset();
      await reader.forceFlush();
      const byName = new Map<string, MetricData>();
      for (const resource of exporter.getMetrics()) {
        for (const scope of resource.scopeMetrics) for (const metric of scope.metrics) byName.set(metric.descriptor.name, metric);
      }
      return byName;
    },
  };
}

function options(extra: Partial<PoolModuleRootOptions>): PoolModuleRootOptions {
  return { primary: nodeOptions('primary'), replicas: replicaOptions(), applicationName: `${APP}-${++seq}`, min: 1, max: 4, sizingAdvisor: false, env: {}, ...extra } as PoolModuleRootOptions;
}

async function start(opts: PoolModuleRootOptions): Promise<TestingModule> {
  const app = await Test.createTestingModule({ imports: [PoolModule.forRoot(opts)] }).compile();
  running.push(app);
  await app.init();
  return app;
}

/** The value of the one data point of `metric` whose attributes include `attrs`. */
function point(metric: MetricData | undefined, attrs: Record<string, string>): number {
  expect(metric).toBeDefined();
  const found = metric!.dataPoints.filter((p) => Object.entries(attrs).every(([k, v]) => p.attributes[k] === v));
  expect(found).toHaveLength(1);
  const value = found[0]!.value;
  return typeof value === 'number' ? value : (value as { count: number }).count;
}

describe('OpenTelemetry metrics (metrics.openTelemetry)', () => {
  it('reports the semantic-convention pool metrics of the primary and both replicas, matching the server sessions', async () => {
    const otel = sdk();
    const opts = options({ metrics: { openTelemetry: { meterProvider: otel.provider } } });
    const app = await start(opts);
    const db = app.get(DatabaseService);
    // 4 statements at once on the primary: the pool grows beyond min = 1 (create_time).
    await Promise.all([1, 2, 3, 4].map(() => db.primary.query('SELECT pg_sleep(0.05)')));
    await db.withClient(async (client) => {
      await client.query('SELECT 1');
      await new Promise((resolve) => setTimeout(resolve, 30));
    });
    const reads = 6;
    for (let i = 0; i < reads; i++) await db.replica.query('SELECT 1');

    const m = await otel.collect();
    const sessions = await poolSessionCounts(opts.applicationName!);
    const pools = { 'default/primary': 'primary', 'default/replica-1': 'replica1', 'default/replica-2': 'replica2' } as const;
    for (const [pool, node] of Object.entries(pools)) {
      const idle = point(m.get('db.client.connection.count'), { [POOL]: pool, 'db.client.connection.state': 'idle' });
      const used = point(m.get('db.client.connection.count'), { [POOL]: pool, 'db.client.connection.state': 'used' });
      expect({ pool, open: idle + used, used }).toEqual({ pool, open: sessions[node], used: 0 });
      expect(point(m.get('db.client.connection.max'), { [POOL]: pool })).toBe(4);
      expect(point(m.get('db.client.connection.idle.max'), { [POOL]: pool })).toBe(4);
      expect(point(m.get('db.client.connection.idle.min'), { [POOL]: pool })).toBe(1);
      expect(point(m.get('db.client.connection.pending_requests'), { [POOL]: pool })).toBe(0);
      expect(point(m.get('db.client.connection.timeouts'), { [POOL]: pool })).toBe(0);
    }
    expect(sessions.primary).toBeGreaterThan(1);

    // Histograms in seconds: every acquire waited, every release held, the new connections were timed.
    const primaryPool = { [POOL]: 'default/primary' };
    expect(point(m.get('db.client.connection.wait_time'), primaryPool)).toBeGreaterThanOrEqual(5);
    expect(point(m.get('db.client.connection.use_time'), primaryPool)).toBeGreaterThanOrEqual(5);
    expect(point(m.get('db.client.connection.create_time'), primaryPool)).toBeGreaterThanOrEqual(sessions.primary - 1);
    const useTime = m.get('db.client.connection.use_time')!;
    const heldLongest = useTime.dataPoints.find((p) => p.attributes[POOL] === 'default/primary')!.value as { max?: number };
    expect(heldLongest.max).toBeGreaterThanOrEqual(0.025);
    expect(heldLongest.max).toBeLessThan(10);
    for (const name of ['db.client.connection.create_time', 'db.client.connection.wait_time', 'db.client.connection.use_time']) {
      expect(m.get(name)!.descriptor.unit).toBe('s');
      expect(m.get(name)!.dataPointType).toBe(DataPointType.HISTOGRAM);
    }
    expect(m.get('db.client.connection.count')!.descriptor.unit).toBe('{connection}');
    expect(m.get('db.client.connection.pending_requests')!.descriptor.unit).toBe('{request}');

    // Routing counters: the reads went to the replicas (round-robin), the writes to the primary.
    const routedReads = ['default/replica-1', 'default/replica-2'].map((pool) =>
      point(m.get('nestjs_pg_pools.routing.statements'), { [POOL]: pool, 'nestjs_pg_pools.routing.reason': 'read' }),
    );
    expect(routedReads[0]! + routedReads[1]!).toBe(reads);
    expect(point(m.get('nestjs_pg_pools.routing.statements'), { [POOL]: 'default/primary', 'nestjs_pg_pools.routing.reason': 'write' })).toBeGreaterThanOrEqual(5);
  });

  it('counts acquire timeouts and pending requests of a saturated pool', async () => {
    const otel = sdk();
    const opts = options({ replicas: [], max: 1, acquireTimeoutMs: 200, metrics: { openTelemetry: { meterProvider: otel.provider } } });
    const app = await start(opts);
    const db = app.get(DatabaseService);
    let pendingWhileHeld = -1;
    await db.withClient(async () => {
      const waiting = db.query('SELECT 1');
      await new Promise((resolve) => setTimeout(resolve, 50));
      pendingWhileHeld = point((await otel.collect()).get('db.client.connection.pending_requests'), { [POOL]: 'default/primary' });
      await expect(waiting).rejects.toBeInstanceOf(PoolAcquireTimeoutError);
    });
    expect(pendingWhileHeld).toBe(1);
    const m = await otel.collect();
    expect(point(m.get('db.client.connection.timeouts'), { [POOL]: 'default/primary' })).toBe(1);
    expect(point(m.get('db.client.connection.pending_requests'), { [POOL]: 'default/primary' })).toBe(0);
  });

  it('true uses the global MeterProvider of @opentelemetry/api; unset reports nothing; a later app on the same provider reports its own pools', async () => {
    const otel = sdk();
    otelMetrics.setGlobalMeterProvider(otel.provider);

    const off = await start(options({ replicas: [] }));
    await off.get(DatabaseService).query('SELECT 1');
    expect([...(await otel.collect()).keys()].filter((name) => name.startsWith('db.client.'))).toEqual([]);
    running.splice(running.indexOf(off), 1);
    await off.close();

    const first = await start(options({ replicas: [], metrics: { openTelemetry: true } }));
    await first.get(DatabaseService).query('SELECT 1');
    const m = await otel.collect();
    expect(point(m.get('db.client.connection.count'), { [POOL]: 'default/primary', 'db.client.connection.state': 'idle' })).toBe(first.get<Pool>(getPoolToken()).idleCount);
    expect(point(m.get('db.client.connection.max'), { [POOL]: 'default/primary' })).toBe(4);
    expect(point(m.get('db.client.connection.wait_time'), { [POOL]: 'default/primary' })).toBeGreaterThanOrEqual(1);
    running.splice(running.indexOf(first), 1);
    await first.close();

    // app.close() removed the first app's callbacks: the same instruments now report the second app.
    const second = await start(options({ replicas: [], max: 3, metrics: { openTelemetry: true } }));
    await second.get(DatabaseService).query('SELECT 1');
    const again = await otel.collect();
    expect(point(again.get('db.client.connection.max'), { [POOL]: 'default/primary' })).toBe(3);
    expect(point(again.get('db.client.connection.count'), { [POOL]: 'default/primary', 'db.client.connection.state': 'idle' })).toBe(second.get<Pool>(getPoolToken()).idleCount);
  });
});
