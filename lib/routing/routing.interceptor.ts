import { BadRequestException, Injectable, type CallHandler, type ExecutionContext, type NestInterceptor } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { Observable } from 'rxjs';
import { DEFAULT_CONSISTENCY_HEADER, READ_ONLY_METADATA } from '../pool.constants.js';
import { newSession, parseLsn, routingStorage, type RoutingScope } from './routing-context.js';
import { allClusters } from '../core/cluster-registry.js';

function headerOf(request: unknown, name: string): string | undefined {
  const headers = (request as { headers?: Record<string, string | string[] | undefined> } | undefined)?.headers;
  const value = headers?.[name];
  return Array.isArray(value) ? value[0] : value;
}

/**
 * Opens one routing scope per request (kept alive for the whole handler, Observable included):
 * reads made under a `@ReadOnly()` handler go to replicas, writes are remembered for
 * read-your-writes, and a consistency token header raises the WAL position reads must see.
 */
@Injectable()
export class RoutingInterceptor implements NestInterceptor {
  constructor(private readonly reflector: Reflector) {}

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    const request = context.getType() === 'http' ? context.switchToHttp().getRequest<unknown>() : context.getArgByIndex(0);
    const current = routingStorage.getStore();
    if (current !== undefined && current.session.owner === request && request !== undefined) return next.handle();
    const readOnly = this.reflector.get<object | undefined>(READ_ONLY_METADATA, context.getHandler()) !== undefined;
    let minLsn: bigint | undefined;
    if (context.getType() === 'http') {
      const header = allClusters()[0]?.options.routing.consistencyHeader ?? DEFAULT_CONSISTENCY_HEADER;
      const token = headerOf(request, header);
      if (token !== undefined && token !== '') {
        minLsn = parseLsn(token);
        if (minLsn === undefined) {
          throw new BadRequestException(`Invalid ${header} header: expected a WAL position such as "0/16B3748", got ${JSON.stringify(token.slice(0, 64))}.`);
        }
      }
    }
    const scope: RoutingScope = { readOnly, session: newSession(request, minLsn), tx: undefined };
    return new Observable((subscriber) => routingStorage.run(scope, () => next.handle().subscribe(subscriber)));
  }
}
