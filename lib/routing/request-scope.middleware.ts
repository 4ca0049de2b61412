import type { HttpServer } from '@nestjs/common';
import type { ClusterRegistry } from '../core/cluster-registry.js';
import { requestScope } from './request-scope.js';
import { routingStorage, type RoutingScope } from './routing-context.js';

type Next = (err?: unknown) => void;

interface FastifyLike {
  addHook(name: 'onRequest' | 'preValidation', hook: (request: object, reply: unknown, done: Next) => void): unknown;
  hasRequestDecorator(name: string): boolean;
  decorateRequest(name: string, value: unknown): unknown;
}

const SCOPE = 'pgPoolsScope';

/**
 * Opens the routing scope of every HTTP request of the application, once for all databases,
 * before guards, pipes, interceptors and the handler: an Express middleware mounted ahead of the
 * routes, or a Fastify `onRequest` hook (entered again in `preValidation` when a body parser
 * ran outside the hook's context).
 */
export function mountRequestScope(adapter: HttpServer, registry: ClusterRegistry): void {
  if (adapter.getType() === 'fastify') {
    const fastify = adapter.getInstance() as FastifyLike;
    if (!fastify.hasRequestDecorator(SCOPE)) fastify.decorateRequest(SCOPE, null);
    fastify.addHook('onRequest', (request, _reply, done) => {
      const scope = requestScope(request, registry, { readsHeaders: true });
      (request as Record<typeof SCOPE, RoutingScope>)[SCOPE] = scope;
      routingStorage.run(scope, done);
    });
    fastify.addHook('preValidation', (request, _reply, done) => {
      const scope = (request as Record<typeof SCOPE, RoutingScope | null>)[SCOPE];
      if (scope === null || routingStorage.getStore() === scope) done();
      else routingStorage.run(scope, done);
    });
    return;
  }
  adapter.use((request: unknown, _response: unknown, next: Next) => routingStorage.run(requestScope(request, registry, { readsHeaders: true }), next));
}
