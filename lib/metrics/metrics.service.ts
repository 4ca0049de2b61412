import { Injectable, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { Registry, type RegistryContentType } from 'prom-client';
import { ClusterRegistry } from '../core/cluster-registry.js';
import type { PoolCluster } from '../core/pool-cluster.js';
import { resolveMetricsOptions, type ResolvedMetricsOptions } from './metrics.options.js';
import { snapshotPools, type PoolMetricsSnapshot } from './metrics.snapshot.js';
import { startOpenTelemetryMetrics, type OpenTelemetryMetrics } from './otel.metrics.js';
import { registerPoolMetrics, type PoolMetricsRegistration } from './prometheus.collector.js';

/**
 * Serves the metrics of every database of the application, once per application (root module),
 * with the `metrics` options of the first `PoolModule` import.
 */
@Injectable()
export class PoolMetricsService implements OnModuleInit, OnApplicationShutdown {
  #registration: PoolMetricsRegistration | undefined;
  #openTelemetry: OpenTelemetryMetrics | undefined;

  #defaults: ResolvedMetricsOptions | undefined;

  constructor(private readonly databases: ClusterRegistry) {}

  /** The application's `metrics` options. */
  get config(): ResolvedMetricsOptions {
    return this.databases.metricsOptions() ?? (this.#defaults ??= resolveMetricsOptions(undefined));
  }

  async onModuleInit(): Promise<void> {
    if (!this.config.enabled) return;
    this.#register();
    if (this.config.openTelemetry) this.#openTelemetry = await startOpenTelemetryMetrics(this.config.openTelemetry, () => this.clusters());
  }

  onApplicationShutdown(): void {
    this.#openTelemetry?.stop();
    this.#openTelemetry = undefined;
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
