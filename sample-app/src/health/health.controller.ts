import { Controller, Get } from '@nestjs/common';
import { HealthCheck, HealthCheckService } from '@nestjs/terminus';
import { PoolHealthIndicator } from 'nestjs-pg-pools';

/**
 * `GET /health`: the primary and every replica. 200 while the primary is up (a replica down shows
 * as `degraded: true` with that node `down`), 503 when the primary is down.
 */
@Controller('health')
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly pools: PoolHealthIndicator,
  ) {}

  @Get()
  @HealthCheck()
  check() {
    return this.health.check([() => this.pools.check('database')]);
  }
}
