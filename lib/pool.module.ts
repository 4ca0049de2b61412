import { Module, type DynamicModule } from '@nestjs/common';
import { PoolCoreModule } from './pool-core.module.js';
import { PoolRootModule } from './pool-root.module.js';
import type { PoolModuleAsyncOptions, PoolModuleRootOptions } from './pool.interfaces.js';

/**
 * Registers the pools of one database (a primary and its replicas). Call it once per database;
 * a second database takes a `name` and is injected with `@InjectDatabase(name)`.
 */
@Module({})
export class PoolModule {
  static forRoot(options: PoolModuleRootOptions): DynamicModule {
    const core = PoolCoreModule.forRoot(options);
    return { module: PoolModule, imports: [PoolRootModule, core], exports: [core] };
  }

  static forRootAsync(options: PoolModuleAsyncOptions): DynamicModule {
    const core = PoolCoreModule.forRootAsync(options);
    return { module: PoolModule, imports: [PoolRootModule, core], exports: [core] };
  }
}
