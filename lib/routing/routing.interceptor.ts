import { BadRequestException, Injectable, type CallHandler, type ExecutionContext, type NestInterceptor } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { Observable } from 'rxjs';
import { allClusters } from '../core/cluster-registry.js';
import type { PoolCluster } from '../core/pool-cluster.js';
import { DEFAULT_CONSISTENCY_HEADER, DEFAULT_DATABASE, READ_ONLY_METADATA } from '../pool.constants.js';
import { newSession, parseConsistencyToken, routingStorage, TOKEN_FORM, type RoutingScope } from './routing-context.js';

const MAX_TOKEN_LENGTH = 1024;

function headerOf(request: unknown, name: string): string | undefined {
  const headers = (request as { headers?: Record<string, string | string[] | undefined> } | undefined)?.headers;
  const value = headers?.[name];
  return Array.isArray(value) ? value.join(',') : value;
}

/** The consistency token a request carries, per database; 400 when it is malformed. */
let headersOf: readonly PoolCluster[] | undefined;
let headerNames: readonly string[] = [DEFAULT_CONSISTENCY_HEADER];

/** The consistency headers of the registered databases (computed again only when they change). */
function consistencyHeaders(): readonly string[] {
  const clusters = allClusters();
  if (clusters !== headersOf) {
    headersOf = clusters;
    headerNames = clusters.length === 0 ? [DEFAULT_CONSISTENCY_HEADER] : [...new Set(clusters.map((c) => c.options.routing.consistencyHeader))];
  }
  return headerNames;
}

export function carriedToken(request: unknown): Map<string, bigint> | undefined {
  const names = consistencyHeaders();
  let carried: Map<string, bigint> | undefined;
  for (const name of names) {
    const token = headerOf(request, name);
    if (token === undefined || token.trim() === '') continue;
    const parsed = token.length <= MAX_TOKEN_LENGTH ? parseConsistencyToken(token, DEFAULT_DATABASE) : undefined;
    if (parsed === undefined) {
      const shown = token.length > 64 ? `${token.slice(0, 64)}…` : token;
      throw new BadRequestException(
        `Cannot read the ${name} header because it is not a consistency token: expected ${TOKEN_FORM}, got ${JSON.stringify(shown)}. ` +
          'Please make sure that the client sends back the value db.consistencyToken() returned, unchanged.',
      );
    }
    carried ??= new Map();
    for (const [database, lsn] of parsed) {
      const current = carried.get(database);
      if (current === undefined || lsn > current) carried.set(database, lsn);
    }
  }
  return carried;
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
    const http = context.getType() === 'http';
    const request = http ? context.switchToHttp().getRequest<unknown>() : context.getArgByIndex(0);
    const current = routingStorage.getStore();
    if (current !== undefined && request !== undefined && current.session.owner === request) return next.handle();
    const readOnly = this.reflector.get<object | undefined>(READ_ONLY_METADATA, context.getHandler()) !== undefined;
    const scope: RoutingScope = { readOnly, session: newSession(request, http ? carriedToken(request) : undefined), tx: undefined };
    return new Observable((subscriber) => routingStorage.run(scope, () => next.handle().subscribe(subscriber)));
  }
}
