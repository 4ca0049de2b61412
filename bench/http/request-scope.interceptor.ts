import { AsyncLocalStorage } from 'node:async_hooks';
import { Injectable, Module, type CallHandler, type ExecutionContext, type NestInterceptor } from '@nestjs/common';
import { APP_INTERCEPTOR } from '@nestjs/core';
import { Observable } from 'rxjs';
import { RawUsersModule } from './users-raw.module.js';

const requestStorage = new AsyncLocalStorage<{ request: unknown }>();

/**
 * The usual way to give every request an AsyncLocalStorage scope in Nest (nestjs-cls style): a
 * global interceptor that subscribes inside `run()`. What any request-scoped context costs, with
 * no database logic at all.
 */
@Injectable()
class RequestScopeInterceptor implements NestInterceptor {
  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    const store = { request: context.switchToHttp().getRequest<unknown>() };
    return new Observable((subscriber) => requestStorage.run(store, () => next.handle().subscribe(subscriber)));
  }
}

/** The hand-written pool route plus a request-scoped AsyncLocalStorage interceptor. */
@Module({
  imports: [RawUsersModule],
  providers: [{ provide: APP_INTERCEPTOR, useClass: RequestScopeInterceptor }],
})
export class RawScopedUsersModule {}
