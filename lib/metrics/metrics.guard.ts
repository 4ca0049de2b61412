import { Injectable, type CanActivate, type ExecutionContext, type Type } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { isObservable, lastValueFrom } from 'rxjs';
import { PoolMetricsService } from './metrics.service.js';

/** Runs the application's `metrics.guards` in order: every one must let the request through. */
@Injectable()
export class PoolMetricsGuard implements CanActivate {
  readonly #instances = new Map<unknown, CanActivate>();

  constructor(
    private readonly metrics: PoolMetricsService,
    private readonly moduleRef: ModuleRef,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    for (const guard of this.metrics.config.guards) {
      const instance = typeof guard === 'function' ? await this.#instance(guard) : guard;
      const verdict = instance.canActivate(context);
      const allowed = isObservable(verdict) ? await lastValueFrom(verdict) : await verdict;
      if (!allowed) return false;
    }
    return true;
  }

  async #instance(guard: Type<CanActivate>): Promise<CanActivate> {
    const known = this.#instances.get(guard);
    if (known !== undefined) return known;
    let instance: CanActivate;
    try {
      instance = this.moduleRef.get(guard, { strict: false });
    } catch {
      instance = await this.moduleRef.create(guard);
    }
    this.#instances.set(guard, instance);
    return instance;
  }
}
