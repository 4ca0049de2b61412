import { Injectable, Module } from '@nestjs/common';
import { PoolModule, type PoolModuleOptions, type PoolOptionsFactory } from 'nestjs-pg-pools';
import { nodeOptions, replicaOptions } from './cluster.js';
import { ProbeController, ProbeService } from './foundation-probe.js';

export const CLASS_APP_NAME = 'fnd-mod-class';

@Injectable()
export class PoolConfigService implements PoolOptionsFactory {
  static created = 0;
  constructor() {
    PoolConfigService.created++;
  }
  createPoolOptions(): PoolModuleOptions {
    return { primary: nodeOptions('primary'), replicas: replicaOptions(), applicationName: CLASS_APP_NAME, min: 1, max: 3, env: {} };
  }
}

@Module({
  imports: [PoolModule.forRootAsync({ useClass: PoolConfigService })],
  controllers: [ProbeController],
  providers: [ProbeService],
})
export class AsyncClassFixtureModule {}
