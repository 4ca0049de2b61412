import { Module, type DynamicModule } from '@nestjs/common';
import { PoolCoreModule } from './pool-core.module.js';
import type { PoolModuleAsyncOptions, PoolModuleRootOptions } from './pool.interfaces.js';

/**
 * Registers the pools of one database (a primary and its replicas). Call it once per database;
 * a second database takes a `name` and is injected with `@InjectDatabase(name)`.
 */
@Module({})
export class PoolModule {
  static forRoot(options: PoolModuleRootOptions): DynamicModule {
    return { module: PoolModule, imports: [PoolCoreModule.forRoot(options)] };
  }

  static forRootAsync(options: PoolModuleAsyncOptions): DynamicModule {
    return { module: PoolModule, imports: [PoolCoreModule.forRootAsync(options)] };
  }
}
