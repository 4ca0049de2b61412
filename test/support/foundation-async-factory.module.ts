import { Module } from '@nestjs/common';
import { PoolModule, type PoolModuleOptions } from 'nestjs-pg-pools';

import { nodeUrl } from './foundation-db.js';
import { ProbeController, ProbeService } from './foundation-probe.js';

export const FACTORY_APP_NAME = 'fnd-mod-factory';
export const DATABASE_SETTINGS = Symbol('DATABASE_SETTINGS');

interface DatabaseSettings {
  primaryUrl: string;
  replicaUrls: string[];
}

@Module({
  providers: [
    {
      provide: DATABASE_SETTINGS,
      useValue: {
        primaryUrl: nodeUrl('primary'),
        replicaUrls: [nodeUrl('replica1'), nodeUrl('replica2')],
      } satisfies DatabaseSettings,
    },
  ],
  exports: [DATABASE_SETTINGS],
})
class SettingsModule {}

@Module({
  imports: [
    PoolModule.forRootAsync({
      imports: [SettingsModule],
      inject: [DATABASE_SETTINGS],
      useFactory: async (settings: DatabaseSettings): Promise<PoolModuleOptions> => ({
        primary: { connectionString: settings.primaryUrl },
        replicas: settings.replicaUrls.map((connectionString) => ({ connectionString })),
        applicationName: FACTORY_APP_NAME,
        min: 1,
        max: 3,
        env: {},
      }),
    }),
  ],
  controllers: [ProbeController],
  providers: [ProbeService],
})
export class AsyncFactoryFixtureModule {}
