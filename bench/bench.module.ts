import { Injectable, Module, type DynamicModule, type INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { DatabaseService, PoolModule, ReadOnly, type NodeOptions, type PoolModuleRootOptions } from '../lib/index.js';
import { resolveOptions } from '../lib/config/resolve-options.js';
import type { PoolCluster } from '../lib/core/pool-cluster.js';
import { getClusterToken } from '../lib/pool.utils.js';
import { routingStorage } from '../lib/routing/routing-context.js';
import { benchCluster, POOL_MAX, serverConfig } from './bench.config.js';
import { benchLogger } from './bench.logger.js';

/** A provider with `@ReadOnly()` methods, used the way an application would. */
@Injectable()
export class ReadService {
  constructor(private readonly db: DatabaseService) {}

  @ReadOnly()
  selectOne() {
    return this.db.query('SELECT 1');
  }

  /** No I/O: enters the read-only scope and picks a replica, what every routed read pays. */
  @ReadOnly()
  pickOnly(cluster: PoolCluster) {
    const scope = routingStorage.getStore();
    return scope?.readOnly === true ? cluster.pickReplica(undefined, undefined) : undefined;
  }
}

@Module({})
export class BenchModule {
  static register(options: PoolModuleRootOptions): DynamicModule {
    return { module: BenchModule, imports: [PoolModule.forRoot(options)], providers: [ReadService], exports: [ReadService] };
  }
}

export interface OursOptions {
  applicationName: string;
  replicas?: boolean;
  leakDetectionThresholdMs?: number;
  /** Profiling aid only (bench.profile.ts --fake): a pg.Client stand-in; also turns the sizing advisor off. */
  Client?: NodeOptions['Client'];
  /** Only to measure what automatic preparation itself brings (it is on by default). */
  preparedStatements?: PoolModuleRootOptions['preparedStatements'];
}

/** Library defaults everywhere except the servers, `max` and the application name. */
export function oursOptions({ applicationName, replicas = true, leakDetectionThresholdMs, Client, preparedStatements }: OursOptions): PoolModuleRootOptions {
  const { ports } = benchCluster;
  const node = (port: number) => ({ ...serverConfig(port), max: POOL_MAX, ...(Client === undefined ? {} : { Client }) });
  return {
    primary: node(ports.primary),
    replicas: replicas ? [node(ports.replica1), node(ports.replica2)] : [],
    applicationName,
    ...(leakDetectionThresholdMs === undefined ? {} : { leakDetectionThresholdMs }),
    ...(Client === undefined ? {} : { sizingAdvisor: false }),
    ...(preparedStatements === undefined ? {} : { preparedStatements }),
  };
}

/**
 * The server session settings the library sends by default (`-c statement_timeout=… -c TimeZone=UTC`,
 * plus `default_transaction_read_only=on` on replicas), read from the library's own option resolution.
 */
export function librarySessionOptions(role: 'primary' | 'replica'): string | undefined {
  const resolved = resolveOptions(oursOptions({ applicationName: 'bench-session' }));
  return (role === 'primary' ? resolved.primary : resolved.replicas[0]!).poolConfig.options;
}

export interface OursApp {
  app: INestApplicationContext;
  db: DatabaseService;
  reads: ReadService;
  cluster: PoolCluster;
}

/** A Nest application context with `PoolModule.forRoot()`, as a user would build one. */
export async function createOursApp(options: OursOptions): Promise<OursApp> {
  const app = await NestFactory.createApplicationContext(BenchModule.register(oursOptions(options)), { logger: benchLogger, abortOnError: false });
  return {
    app,
    db: app.get(DatabaseService),
    reads: app.get(ReadService),
    cluster: app.get<PoolCluster>(getClusterToken(), { strict: false }),
  };
}
