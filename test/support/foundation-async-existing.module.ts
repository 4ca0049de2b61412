import { Injectable, Module } from '@nestjs/common';
import { PoolModule, type PoolModuleOptions, type PoolOptionsFactory } from 'nestjs-pg-pools';
import { nodeOptions, replicaOptions } from './cluster.js';
import { ProbeController, ProbeService } from './foundation-probe.js';

export const EXISTING_APP_NAME = 'fnd-mod-existing';

@Injectable()
export class ExistingPoolConfig implements PoolOptionsFactory {
  static created = 0;
  constructor() {
    ExistingPoolConfig.created++;
  }
  createPoolOptions(): Promise<PoolModuleOptions> {
    return Promise.resolve({ primary: nodeOptions('primary'), replicas: replicaOptions(), applicationName: EXISTING_APP_NAME, min: 1, max: 3, env: {} });
  }
}

@Module({ providers: [ExistingPoolConfig], exports: [ExistingPoolConfig] })
export class PoolConfigModule {}

@Module({
  imports: [PoolModule.forRootAsync({ imports: [PoolConfigModule], useExisting: ExistingPoolConfig })],
  controllers: [ProbeController],
  providers: [ProbeService],
})
export class AsyncExistingFixtureModule {}
