import { Inject, Module, type DynamicModule, type OnApplicationShutdown, type Provider } from '@nestjs/common';
import { APP_INTERCEPTOR, ModuleRef } from '@nestjs/core';
import { resolveOptions } from './config/resolve-options.js';
import { registerCluster, unregisterCluster } from './core/cluster-registry.js';
import { PoolCluster } from './core/pool-cluster.js';
import { adviseSizing, type SizingReport } from './core/sizing-advisor.js';
import { DatabaseService } from './database.service.js';
import { PoolHealthIndicator } from './health/pool.health.js';
import { watchPoolAlerts } from './metrics/alerts.monitor.js';
import { watchPoolLoad } from './metrics/sizing.monitor.js';
import { DEFAULT_DATABASE } from './pool.constants.js';
import type { PoolModuleAsyncOptions, PoolModuleOptions, PoolOptionsFactory } from './pool.interfaces.js';
import { getClusterToken, getDatabaseToken, getPoolOptionsToken, getPoolToken } from './pool.utils.js';
import { RoutingInterceptor } from './routing/routing.interceptor.js';

const DATABASE_NAME = Symbol('nestjs-pg-pools:database-name');

async function createCluster(raw: PoolModuleOptions, name: string): Promise<PoolCluster> {
  const cluster = new PoolCluster(resolveOptions(raw, name));
  try {
    await cluster.warmUp();
  } catch (err) {
    await cluster.close();
    throw err;
  }
  registerCluster(cluster);
  let budgets: SizingReport[] = [];
  if (!cluster.options.lazy) {
    if (cluster.options.sizingAdvisor) budgets = await adviseSizing(cluster);
    await cluster.checkLag();
  }
  cluster.startLagMonitor();
  watchPoolAlerts(cluster);
  watchPoolLoad(cluster, budgets);
  return cluster;
}

function databaseProviders(name: string): Provider[] {
  const clusterToken = getClusterToken(name);
  return [
    { provide: DATABASE_NAME, useValue: name },
    {
      provide: clusterToken,
      useFactory: (raw: PoolModuleOptions) => createCluster(raw, name),
      inject: [getPoolOptionsToken(name)],
    },
    { provide: getDatabaseToken(name), useFactory: (c: PoolCluster) => new DatabaseService(c), inject: [clusterToken] },
    { provide: getPoolToken(name, 'primary'), useFactory: (c: PoolCluster) => c.primary.pool, inject: [clusterToken] },
    { provide: getPoolToken(name, 'replicas'), useFactory: (c: PoolCluster) => c.replicas.map((r) => r.node.pool), inject: [clusterToken] },
    { provide: APP_INTERCEPTOR, useClass: RoutingInterceptor },
    PoolHealthIndicator,
  ];
}

function exportedTokens(name: string) {
  return [getDatabaseToken(name), getPoolToken(name, 'primary'), getPoolToken(name, 'replicas'), getClusterToken(name), PoolHealthIndicator];
}

@Module({})
export class PoolCoreModule implements OnApplicationShutdown {
  constructor(
    @Inject(DATABASE_NAME) private readonly name: string,
    private readonly moduleRef: ModuleRef,
  ) {}

  static forRoot(options: PoolModuleOptions & { name?: string; isGlobal?: boolean }): DynamicModule {
    const name = options?.name ?? DEFAULT_DATABASE;
    return {
      module: PoolCoreModule,
      global: options?.isGlobal ?? true,
      providers: [{ provide: getPoolOptionsToken(name), useValue: options }, ...databaseProviders(name)],
      exports: exportedTokens(name),
    };
  }

  static forRootAsync(options: PoolModuleAsyncOptions): DynamicModule {
    const name = options.name ?? DEFAULT_DATABASE;
    const optionsToken = getPoolOptionsToken(name);
    const providers: Provider[] = [...databaseProviders(name)];
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
      global: options.isGlobal ?? true,
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
    unregisterCluster(cluster);
    await cluster.close();
  }
}
