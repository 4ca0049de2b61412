import { Global, Module, type MiddlewareConsumer, type NestModule } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { PoolRegistry } from './core/cluster-registry.js';
import { PoolHealthIndicator } from './health/pool.health.js';
import { mountRequestScope } from './routing/request-scope.middleware.js';
import { RoutingInterceptor } from './routing/routing.interceptor.js';

/**
 * The app-wide parts, once per application however many `PoolModule.forRoot*()` imports there
 * are: the registry of databases, the HTTP request scope, the health indicator and the routing
 * interceptor for contexts without HTTP middleware. Imported by every `PoolModule`. Internal.
 */
@Global()
@Module({
  providers: [PoolRegistry, PoolHealthIndicator, RoutingInterceptor],
  exports: [PoolRegistry, PoolHealthIndicator, RoutingInterceptor],
})
export class PoolRootModule implements NestModule {
  constructor(
    private readonly registry: PoolRegistry,
    private readonly adapterHost: HttpAdapterHost,
  ) {}

  configure(_consumer: MiddlewareConsumer): void {
    const adapter = this.adapterHost.httpAdapter;
    if (adapter !== undefined && adapter !== null) mountRequestScope(adapter, this.registry);
  }
}
