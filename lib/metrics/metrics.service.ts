import { Inject, Injectable, type OnApplicationBootstrap, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { ModulesContainer } from '@nestjs/core';
import { Registry, type RegistryContentType } from 'prom-client';
import { PoolCluster } from '../core/pool-cluster.js';
import { METRICS_CONFIG, METRICS_OWNER } from './metrics.constants.js';
import type { ResolvedMetricsOptions } from './metrics.options.js';
import { snapshotPools, type PoolMetricsSnapshot } from './metrics.snapshot.js';
import { startOpenTelemetryMetrics, type OpenTelemetryMetrics } from './otel.metrics.js';
import { registerPoolMetrics, type PoolMetricsRegistration } from './prometheus.collector.js';

/**
 * Serves the metrics of every database of the application. One per `PoolModule` import; only
 * the one whose options won (the first import) registers metrics and answers requests.
 */
@Injectable()
export class PoolMetricsService implements OnModuleInit, OnApplicationBootstrap, OnApplicationShutdown {
  #clusters: PoolCluster[] | undefined;
  #bootstrapped = false;
  #registration: PoolMetricsRegistration | undefined;
  #openTelemetry: OpenTelemetryMetrics | undefined;

  constructor(
    @Inject(METRICS_CONFIG) private readonly config: ResolvedMetricsOptions,
    @Inject(METRICS_OWNER) private readonly owner: ResolvedMetricsOptions,
    private readonly modules: ModulesContainer,
  ) {}

  get isOwner(): boolean {
    return this.owner === this.config;
  }

  async onModuleInit(): Promise<void> {
    if (!this.isOwner || !this.config.enabled) return;
    this.#register();
    if (this.config.openTelemetry) this.#openTelemetry = await startOpenTelemetryMetrics(this.config.openTelemetry, () => this.clusters());
  }

  onApplicationBootstrap(): void {
    this.#bootstrapped = true;
    this.#clusters = undefined;
  }

  onApplicationShutdown(): void {
    this.#openTelemetry?.stop();
    this.#openTelemetry = undefined;
    this.#registration?.unregister();
    this.#registration = undefined;
  }

  /** Every open database of this application, in import order. */
  clusters(): PoolCluster[] {
    let clusters = this.#clusters;
    if (clusters === undefined) {
      const found = new Set<PoolCluster>();
      for (const moduleRef of this.modules.values()) {
        for (const wrapper of moduleRef.providers.values()) {
          const instance: unknown = wrapper.instance;
          if (instance instanceof PoolCluster) found.add(instance);
        }
      }
      clusters = [...found];
      if (this.#bootstrapped) this.#clusters = clusters;
    }
    return clusters.filter((c) => !c.closed);
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
