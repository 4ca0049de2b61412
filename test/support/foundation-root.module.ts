import { Module } from '@nestjs/common';
import { PoolModule } from 'nestjs-pg-pools';
import { nodeOptions, replicaOptions } from './cluster.js';
import { ProbeController, ProbeService } from './foundation-probe.js';

export const ROOT_APP_NAME = 'fnd-mod-root';

@Module({
  imports: [
    PoolModule.forRoot({
      primary: nodeOptions('primary'),
      replicas: replicaOptions(),
      applicationName: ROOT_APP_NAME,
      min: 1,
      max: 3,
      env: {},
    }),
  ],
  controllers: [ProbeController],
  providers: [ProbeService],
})
export class RootFixtureModule {}
