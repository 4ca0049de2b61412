import { resolveMetricsOptions } from '../metrics/metrics.options.js';
import { PoolError } from '../pool.exceptions.js';
import { allClusters, findCluster, ClusterRegistry } from './cluster-registry.js';
import type { PoolCluster } from './pool-cluster.js';

// The registry of one application's databases: import order, one name once, the consistency
// headers, the metrics options of the first import, and what decorators outside DI find.

function fakeCluster(name: string, consistencyHeader = 'x-pg-consistency-token', fromRequest?: (request: unknown) => unknown): PoolCluster {
  return { name, options: { routing: { consistencyHeader }, session: { fromRequest } } } as unknown as PoolCluster;
}

describe('ClusterRegistry', () => {
  it('lists databases in import order whatever order they finish starting in, and their headers once each', () => {
    const registry = new ClusterRegistry();
    const analytics = fakeCluster('analytics', 'x-analytics-token');
    const main = fakeCluster('default');
    const reports = fakeCluster('reports');
    registry.add(analytics, 2);
    registry.add(main, 0);
    registry.add(reports, 1);
    expect(registry.all()).toEqual([main, reports, analytics]);
    expect(registry.get('reports')).toBe(reports);
    expect(registry.consistencyHeaders()).toEqual(['x-pg-consistency-token', 'x-analytics-token']);
    for (const c of [main, reports, analytics]) registry.remove(c);
    expect(registry.all()).toEqual([]);
  });

  it('tells request scopes whether any database derives a session context from the request, as databases come and go', () => {
    const registry = new ClusterRegistry();
    const main = fakeCluster('default');
    const tenants = fakeCluster('tenants', 'x-pg-consistency-token', () => ({ settings: { 'app.tenant_id': 'a' } }));
    expect(registry.sessionContexts()).toBe(false);
    registry.add(main, 0);
    expect(registry.sessionContexts()).toBe(false);
    registry.add(tenants, 1);
    expect(registry.sessionContexts()).toBe(true);
    registry.remove(tenants);
    expect(registry.sessionContexts()).toBe(false);
    registry.remove(main);
  });

  it('refuses a second database of the same name, and frees a name whose database failed to start', () => {
    const registry = new ClusterRegistry();
    registry.claim('default');
    expect(() => registry.claim('default')).toThrow(PoolError);
    expect(() => registry.claim('default')).toThrow('Cannot register database "default" because this application already has a database of that name.');
    registry.release('default');
    expect(() => registry.claim('default')).not.toThrow();
  });

  it('keeps the metrics options of the first import', () => {
    const registry = new ClusterRegistry();
    const second = resolveMetricsOptions({ jsonPath: 'second' });
    const first = resolveMetricsOptions({ jsonPath: 'first' });
    registry.offerMetrics(second, 1);
    registry.offerMetrics(first, 0);
    expect(registry.metricsOptions()).toBe(first);
  });

  it('lets decorators find a database in the given registry first, else in the latest started application', () => {
    const older = new ClusterRegistry();
    const newer = new ClusterRegistry();
    const a = fakeCluster('default');
    const b = fakeCluster('default');
    older.add(a, 0);
    newer.add(b, 0);
    try {
      expect(findCluster('default')).toBe(b);
      expect(findCluster('default', older)).toBe(a);
      expect(allClusters()).toEqual(expect.arrayContaining([a, b]));
      expect(() => findCluster('nope')).toThrow('Cannot run @Transactional() on database "nope" because it is not registered.');
    } finally {
      older.remove(a);
      newer.remove(b);
    }
    expect(allClusters()).not.toContain(a);
  });
});
