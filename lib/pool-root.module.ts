import { Global, Module, type MiddlewareConsumer, type NestModule } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { ClusterRegistry } from './core/cluster-registry.js';
import { PoolHealthIndicator } from './health/pool.health.js';
import { METRICS_CONTROLLERS, routeMetricsControllers } from './metrics/metrics.controller.js';
import { PoolMetricsGuard } from './metrics/metrics.guard.js';
import { PoolMetricsService } from './metrics/metrics.service.js';
import { mountRequestScope } from './routing/request-scope.middleware.js';
import { RoutingInterceptor } from './routing/routing.interceptor.js';

/**
 * The app-wide parts, once per application however many `PoolModule.forRoot*()` imports there
 * are: the registry of databases, the HTTP request scope, the metrics endpoints (with the first
 * import's `metrics` options), the health indicator and the routing interceptor for contexts
 * without HTTP middleware. Imported by every `PoolModule`. Internal.
 */
@Global()
@Module({
  controllers: METRICS_CONTROLLERS,
  providers: [ClusterRegistry, PoolHealthIndicator, RoutingInterceptor, PoolMetricsService, PoolMetricsGuard],
  exports: [ClusterRegistry, PoolHealthIndicator, RoutingInterceptor],
})
export class PoolRootModule implements NestModule {
  constructor(
    private readonly registry: ClusterRegistry,
    private readonly adapterHost: HttpAdapterHost,
    private readonly metrics: PoolMetricsService,
  ) {}

  configure(_consumer: MiddlewareConsumer): void {
    routeMetricsControllers(this.metrics.config);
    const adapter = this.adapterHost.httpAdapter;
    if (adapter !== undefined && adapter !== null) mountRequestScope(adapter, this.registry);
  }
}
