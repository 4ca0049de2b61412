import { Module, type DynamicModule } from '@nestjs/common';
import { ModulesContainer } from '@nestjs/core';
import type { MetricsOptions } from '../pool.interfaces.js';
import { METRICS_CONFIG, METRICS_OWNER } from './metrics.constants.js';
import { createMetricsControllers } from './metrics.controller.js';
import { resolveMetricsOptions, type ResolvedMetricsOptions } from './metrics.options.js';
import { PoolMetricsService } from './metrics.service.js';

const elections = new WeakMap<ModulesContainer, ResolvedMetricsOptions>();

/**
 * Picks the metrics options of the first `PoolModule` import of an application and takes the
 * controllers of every later import out before routes are registered, so the endpoints exist
 * once however many databases there are. Runs while providers are created, before `init()`
 * maps routes.
 */
export function electMetricsOwner(modules: ModulesContainer): ResolvedMetricsOptions | undefined {
  const known = elections.get(modules);
  if (known !== undefined) return known;
  let owner: ResolvedMetricsOptions | undefined;
  for (const moduleRef of modules.values()) {
    if (moduleRef.metatype !== PoolMetricsModule) continue;
    const config = moduleRef.providers.get(METRICS_CONFIG)?.instance as ResolvedMetricsOptions | undefined;
    if (owner === undefined) {
      owner = config;
      continue;
    }
    if (config !== owner) {
      for (const token of [...moduleRef.controllers.keys()]) moduleRef.controllers.delete(token);
    }
  }
  if (owner !== undefined) elections.set(modules, owner);
  return owner;
}

/** The metrics endpoints and collectors; imported by every `PoolModule.forRoot*()`. Internal. */
@Module({})
export class PoolMetricsModule {
  static forRoot(raw: MetricsOptions | undefined): DynamicModule {
    const config = resolveMetricsOptions(raw);
    return {
      module: PoolMetricsModule,
      controllers: createMetricsControllers(config),
      providers: [
        { provide: METRICS_CONFIG, useValue: config },
        { provide: METRICS_OWNER, useFactory: electMetricsOwner, inject: [ModulesContainer] },
        PoolMetricsService,
      ],
    };
  }
}
