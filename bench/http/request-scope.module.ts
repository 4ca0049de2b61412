import { AsyncLocalStorage } from 'node:async_hooks';
import { Module, type MiddlewareConsumer, type NestModule } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { RawUsersModule } from './users-raw.module.js';

const requestStorage = new AsyncLocalStorage<{ request: unknown }>();

/**
 * The hand-written pool route plus a request-scoped AsyncLocalStorage opened the way the library
 * opens its own (an Express middleware ahead of the routes): what any request scope costs by
 * itself, with no database logic at all.
 */
@Module({ imports: [RawUsersModule] })
export class RawScopedUsersModule implements NestModule {
  constructor(private readonly adapterHost: HttpAdapterHost) {}

  configure(_consumer: MiddlewareConsumer): void {
    this.adapterHost.httpAdapter.use((request: unknown, _response: unknown, next: () => void) => requestStorage.run({ request }, next));
  }
}
