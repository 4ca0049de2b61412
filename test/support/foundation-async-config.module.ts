import { Module } from '@nestjs/common';
import { ConfigModule, ConfigService } from '@nestjs/config';
import { PoolModule } from 'nestjs-pg-pools';
import { nodeUrl } from './foundation-db.js';
import { ProbeController, ProbeService } from './foundation-probe.js';

export const CONFIG_APP_NAME = 'fnd-mod-config';

/** What a team keeps in .env files; loaded here without touching process.env. */
export const configValues = () => ({
  DATABASE_URL: nodeUrl('primary'),
  DATABASE_REPLICA_URL: nodeUrl('replica2'),
  DATABASE_POOL_MAX: '4',
  DATABASE_STATEMENT_TIMEOUT_MS: '4500',
});

@Module({
  imports: [
    PoolModule.forRootAsync({
      imports: [ConfigModule.forRoot({ ignoreEnvFile: true, load: [configValues] })],
      inject: [ConfigService],
      useFactory: (config: ConfigService) => ({
        primary: { connectionString: config.getOrThrow<string>('DATABASE_URL') },
        replicas: [{ connectionString: config.getOrThrow<string>('DATABASE_REPLICA_URL') }],
        max: Number(config.getOrThrow<string>('DATABASE_POOL_MAX')),
        min: 1,
        statementTimeoutMs: Number(config.getOrThrow<string>('DATABASE_STATEMENT_TIMEOUT_MS')),
        applicationName: CONFIG_APP_NAME,
        env: {},
      }),
    }),
  ],
  controllers: [ProbeController],
  providers: [ProbeService],
})
export class AsyncConfigFixtureModule {}
