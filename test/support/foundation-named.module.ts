import { Module } from '@nestjs/common';
import { PoolModule } from 'nestjs-pg-pools';
import { nodeOptions, replicaOptions } from './cluster.js';
import { AnalyticsProbeController, AnalyticsProbeService, ProbeController, ProbeService } from './foundation-probe.js';

export const NAMED_DEFAULT_APP_NAME = 'fnd-mod-named-default';
export const NAMED_ANALYTICS_APP_NAME = 'fnd-mod-named-analytics';

/** Two databases side by side: the default one (forRoot) and `analytics` (forRootAsync). */
@Module({
  imports: [
    PoolModule.forRoot({ primary: nodeOptions('primary'), replicas: replicaOptions(), applicationName: NAMED_DEFAULT_APP_NAME, min: 1, max: 3, env: {} }),
    PoolModule.forRootAsync({
      name: 'analytics',
      useFactory: () => ({
        primary: nodeOptions('primary', { name: 'warehouse' }),
        replicas: [nodeOptions('replica2', { name: 'reporting' })],
        applicationName: NAMED_ANALYTICS_APP_NAME,
        min: 2,
        max: 4,
        statementTimeoutMs: 9000,
        env: {},
      }),
    }),
  ],
  controllers: [ProbeController, AnalyticsProbeController],
  providers: [ProbeService, AnalyticsProbeService],
})
export class NamedDatabasesFixtureModule {}
