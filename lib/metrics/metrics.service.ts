import { Inject, Injectable, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { Registry, type RegistryContentType } from 'prom-client';
import { PoolRegistry } from '../core/cluster-registry.js';
import type { PoolCluster } from '../core/pool-cluster.js';
import { METRICS_CONFIG, METRICS_OWNER } from './metrics.constants.js';
import type { ResolvedMetricsOptions } from './metrics.options.js';
import { snapshotPools, type PoolMetricsSnapshot } from './metrics.snapshot.js';
import { registerPoolMetrics, type PoolMetricsRegistration } from './prometheus.collector.js';

/**
 * Serves the metrics of every database of the application. One per `PoolModule` import; only
 * the one whose options won (the first import) registers metrics and answers requests.
 */
@Injectable()
export class PoolMetricsService implements OnModuleInit, OnApplicationShutdown {
  #registration: PoolMetricsRegistration | undefined;

  constructor(
    @Inject(METRICS_CONFIG) private readonly config: ResolvedMetricsOptions,
    @Inject(METRICS_OWNER) private readonly owner: ResolvedMetricsOptions,
    private readonly databases: PoolRegistry,
  ) {}

  get isOwner(): boolean {
    return this.owner === this.config;
  }

  onModuleInit(): void {
    if (this.isOwner && this.config.enabled) this.#register();
  }

  onApplicationShutdown(): void {
    this.#registration?.unregister();
    this.#registration = undefined;
  }

  /** Every open database of this application, in import order. */
  clusters(): PoolCluster[] {
    return this.databases.all().filter((c) => !c.closed);
  }

  snapshot(): PoolMetricsSnapshot {
    return snapshotPools(this.clusters());
  }

  get registry(): Registry<RegistryContentType> {
    return this.#register().registry;
  }

  async prometheusText(): Promise<{ contentType: string; body: string }> {
    const registry = this.registry;
    return { contentType: registry.contentType, body: await registry.metrics() };
  }

  /** The dashboard follows `metrics.dashboard`, else is on unless the first database uses the production preset. */
  dashboardEnabled(): boolean {
    if (this.config.dashboard !== undefined) return this.config.dashboard;
    return this.clusters()[0]?.options.preset !== 'production';
  }

  #register(): PoolMetricsRegistration {
    this.#registration ??= registerPoolMetrics(this.config.registry ?? new Registry(), () => this.clusters());
    return this.#registration;
  }
}
