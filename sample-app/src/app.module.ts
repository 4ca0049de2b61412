import { Logger, Module, type BeforeApplicationShutdown } from '@nestjs/common';
import { PoolModule } from 'nestjs-pg-pools';
import { databaseOptions } from './database.config.js';
import { HealthModule } from './health/health.module.js';
import { QueryBuildersModule } from './query-builders/query-builders.module.js';
import { PingController } from './ping.controller.js';
import { UsersModule } from './users/users.module.js';

@Module({
  imports: [
    // Also registers GET /metrics, /metrics/db-pool and /metrics/db-pool/dashboard, and opens the
    // request scope of every HTTP request (an Express middleware / a Fastify onRequest hook).
    PoolModule.forRootAsync({ useFactory: () => databaseOptions() }),
    UsersModule,
    QueryBuildersModule,
    HealthModule,
  ],
  controllers: [PingController],
})
export class AppModule implements BeforeApplicationShutdown {
  beforeApplicationShutdown(signal?: string): void {
    if (signal !== undefined) new Logger('SampleApp').log(`${signal} received: closing the HTTP server, draining and closing the pools.`);
  }
}
