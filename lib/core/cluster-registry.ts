import { PoolError } from '../pool.exceptions.js';
import type { PoolCluster } from './pool-cluster.js';

const registry = new Map<string, PoolCluster[]>();
/** The registered clusters, flattened once per change (the routing interceptor reads them per request). */
let flat: readonly PoolCluster[] | undefined;

/** Makes a database reachable from method decorators, which run outside dependency injection. */
export function registerCluster(cluster: PoolCluster): void {
  const list = registry.get(cluster.name) ?? [];
  list.push(cluster);
  registry.set(cluster.name, list);
  flat = undefined;
}

export function unregisterCluster(cluster: PoolCluster): void {
  const list = registry.get(cluster.name);
  if (!list) return;
  const i = list.indexOf(cluster);
  if (i !== -1) list.splice(i, 1);
  if (list.length === 0) registry.delete(cluster.name);
  flat = undefined;
}

export function findCluster(name: string): PoolCluster {
  const list = registry.get(name);
  const cluster = list?.[list.length - 1];
  if (!cluster) {
    throw new PoolError(
      `Cannot run @Transactional() on database "${name}" because it is not registered. ` +
        `Please make sure that PoolModule.forRoot${name === 'default' ? '' : `({ name: '${name}', … })`} is imported and the application has started.`,
    );
  }
  return cluster;
}

export function allClusters(): readonly PoolCluster[] {
  return (flat ??= [...registry.values()].flatMap((l) => l));
}
