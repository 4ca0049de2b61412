import { Injectable, type CallHandler, type ExecutionContext, type NestInterceptor } from '@nestjs/common';
import { Observable } from 'rxjs';
import { ClusterRegistry } from '../core/cluster-registry.js';
import { requestScope } from './request-scope.js';
import { routingStorage } from './routing-context.js';

function ownerOf(context: ExecutionContext): { owner: unknown; http: boolean } {
  const type = context.getType<string>();
  if (type === 'http') return { owner: context.switchToHttp().getRequest<unknown>(), http: true };
  if (type === 'graphql') {
    // (root, args, context, info): the request of GraphQL over HTTP, so every resolver joins its scope.
    const gqlContext = context.getArgByIndex<{ req?: unknown } | undefined>(2);
    return { owner: gqlContext?.req ?? gqlContext, http: gqlContext?.req !== undefined };
  }
  return { owner: context.getArgByIndex(0), http: false };
}

/**
 * Opens a routing scope for handlers no HTTP request scope reaches: microservice message
 * handlers, WebSocket gateways, GraphQL resolvers. Apply it per controller, per handler or
 * globally (`@UseInterceptors(RoutingInterceptor)`, `APP_INTERCEPTOR`). The scope lives for the
 * whole handler, Observable included; on an HTTP route that already has its request scope it
 * does nothing.
 */
@Injectable()
export class RoutingInterceptor implements NestInterceptor {
  constructor(private readonly registry: ClusterRegistry) {}

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    const { owner, http } = ownerOf(context);
    const current = routingStorage.getStore();
    if (current !== undefined && owner !== undefined && current.session.owner === owner) return next.handle();
    const scope = requestScope(owner, this.registry, { readsHeaders: http });
    return new Observable((subscriber) => routingStorage.run(scope, () => next.handle().subscribe(subscriber)));
  }
}
