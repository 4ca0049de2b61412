import { Inject, Module, type DynamicModule, type OnApplicationShutdown, type Provider } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { resolveModuleIdentity, resolveOptions } from './config/resolve-options.js';
import { ClusterRegistry } from './core/cluster-registry.js';
import { PoolCluster } from './core/pool-cluster.js';
import { adviseSizing, type SizingReport } from './core/sizing-advisor.js';
import { DatabaseService } from './database.service.js';
import { watchPoolAlerts } from './metrics/alerts.monitor.js';
import { resolveMetricsOptions } from './metrics/metrics.options.js';
import { watchPoolLoad } from './metrics/sizing.monitor.js';
import { DEFAULT_DATABASE } from './pool.constants.js';
import type { MetricsOptions, PoolModuleAsyncOptions, PoolModuleOptions, PoolOptionsFactory } from './pool.interfaces.js';
import { getClusterToken, getDatabaseToken, getPoolOptionsToken, getPoolToken } from './pool.utils.js';

const DATABASE_NAME = Symbol('nestjs-pg-pools:database-name');
/** This import's `metrics` options, handed to the application's registry (the first import's win). */
const METRICS_OFFER = Symbol('nestjs-pg-pools:metrics-offer');

/** Import order of the `forRoot*()` calls, so the registry lists databases in that order. */
let imports = 0;

async function createCluster(raw: PoolModuleOptions, name: string, registry: ClusterRegistry, order: number): Promise<PoolCluster> {
  registry.claim(name);
  let cluster: PoolCluster | undefined;
  try {
    cluster = new PoolCluster(resolveOptions(raw, name));
    await cluster.warmUp();
  } catch (err) {
    await cluster?.close();
    registry.release(name);
    throw err;
  }
  registry.add(cluster, order);
  let budgets: SizingReport[] = [];
  if (!cluster.options.lazy) {
    if (cluster.options.sizingAdvisor) budgets = await adviseSizing(cluster);
    await cluster.checkLag();
  }
  cluster.startBackgroundChecks();
  watchPoolAlerts(cluster);
  watchPoolLoad(cluster, budgets);
  return cluster;
}

function databaseProviders(name: string, metrics: MetricsOptions | undefined): Provider[] {
  const clusterToken = getClusterToken(name);
  const order = imports++;
  const metricsOptions = resolveMetricsOptions(metrics);
  return [
    { provide: DATABASE_NAME, useValue: name },
    { provide: METRICS_OFFER, useFactory: (registry: ClusterRegistry) => registry.offerMetrics(metricsOptions, order), inject: [ClusterRegistry] },
    {
      provide: clusterToken,
      useFactory: (raw: PoolModuleOptions, registry: ClusterRegistry) => createCluster(raw, name, registry, order),
      inject: [getPoolOptionsToken(name), ClusterRegistry],
    },
    { provide: getDatabaseToken(name), useFactory: (c: PoolCluster) => new DatabaseService(c), inject: [clusterToken] },
    { provide: getPoolToken(name, 'primary'), useFactory: (c: PoolCluster) => c.primary.pool, inject: [clusterToken] },
    { provide: getPoolToken(name, 'replicas'), useFactory: (c: PoolCluster) => c.replicas.map((r) => r.node.pool), inject: [clusterToken] },
  ];
}

function exportedTokens(name: string) {
  return [getDatabaseToken(name), getPoolToken(name, 'primary'), getPoolToken(name, 'replicas'), getClusterToken(name)];
}

@Module({})
export class PoolCoreModule implements OnApplicationShutdown {
  constructor(
    @Inject(DATABASE_NAME) private readonly name: string,
    private readonly moduleRef: ModuleRef,
    private readonly registry: ClusterRegistry,
  ) {}

  static forRoot(options: PoolModuleOptions & { name?: string; isGlobal?: boolean }): DynamicModule {
    const { name, global } = resolveModuleIdentity(options);
    return {
      module: PoolCoreModule,
      global,
      providers: [{ provide: getPoolOptionsToken(name), useValue: options }, ...databaseProviders(name, options?.metrics)],
      exports: exportedTokens(name),
    };
  }

  static forRootAsync(options: PoolModuleAsyncOptions): DynamicModule {
    const { name, global } = resolveModuleIdentity(options);
    const optionsToken = getPoolOptionsToken(name);
    const providers: Provider[] = [...databaseProviders(name, options?.metrics)];
    if (options.useFactory) {
      providers.push({ provide: optionsToken, useFactory: options.useFactory, inject: options.inject ?? [] });
    } else {
      const factoryClass = options.useExisting ?? options.useClass;
      if (!factoryClass) {
        throw new TypeError(
          `Cannot register PoolModule.forRootAsync(${name === DEFAULT_DATABASE ? '' : `"${name}"`}) because it has no options source. ` +
            'Please make sure that one of useFactory, useClass or useExisting is given.',
        );
      }
      providers.push({
        provide: optionsToken,
        useFactory: (factory: PoolOptionsFactory) => factory.createPoolOptions(),
        inject: [factoryClass],
      });
      if (options.useClass) providers.push({ provide: options.useClass, useClass: options.useClass });
    }
    return {
      module: PoolCoreModule,
      global,
      imports: options.imports ?? [],
      providers,
      exports: exportedTokens(name),
    };
  }

  async onApplicationShutdown(): Promise<void> {
    let cluster: PoolCluster | undefined;
    try {
      cluster = this.moduleRef.get<PoolCluster>(getClusterToken(this.name), { strict: true });
    } catch {
      return;
    }
    this.registry.remove(cluster);
    await cluster.close();
  }
}
