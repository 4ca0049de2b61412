import type { Registry, RegistryContentType } from 'prom-client';
import { field, resolveSection } from '../config/option.js';
import { ALERT_OPTIONS, METRICS_OPTIONS, type MetricsGuard, type ResolvedOpenTelemetryOptions } from '../config/schema.metrics.js';
import type { AlertOptions, MetricsOptions } from '../pool.interfaces.js';

export type { MetricsGuard, ResolvedOpenTelemetryOptions } from '../config/schema.metrics.js';

export interface ResolvedMetricsOptions {
  readonly enabled: boolean;
  /** Without leading/trailing slashes; `false` serves no Prometheus endpoint. */
  readonly prometheusPath: string | false;
  readonly jsonPath: string;
  /** `undefined`: on unless the first database uses the `production` preset. */
  readonly dashboard: boolean | undefined;
  readonly dashboardPath: string;
  readonly registry: Registry<RegistryContentType> | undefined;
  readonly guards: readonly MetricsGuard[];
  /** `undefined`: OpenTelemetry off. */
  readonly openTelemetry: ResolvedOpenTelemetryOptions | undefined;
}

export interface ResolvedAlertOptions {
  readonly enabled: boolean;
  readonly waitingThreshold: number;
  readonly usageWarn: number;
  readonly usageCritical: number;
  readonly cooldownMs: number;
  readonly intervalMs: number;
  readonly log: boolean;
}

/** Validates `metrics` (the same rules in `forRoot`, `forRootAsync` and the options resolver). */
export function resolveMetricsOptions(raw: MetricsOptions | undefined): ResolvedMetricsOptions {
  const { enabled, prometheusPath, jsonPath, dashboard, dashboardPath: givenDashboardPath, registry, guards, openTelemetry } = resolveSection(METRICS_OPTIONS, raw, field('metrics'));
  const dashboardPath = givenDashboardPath ?? `${jsonPath}/dashboard`;
  const paths = [prometheusPath, jsonPath, dashboardPath].filter((p): p is string => p !== false);
  if (new Set(paths).size !== paths.length) {
    field('metrics').fail('distinct paths for prometheusPath, jsonPath and dashboardPath', paths.join(', '));
  }
  const resolved: ResolvedMetricsOptions = { enabled, prometheusPath, jsonPath, dashboard, dashboardPath, registry, guards, openTelemetry };
  // Nest hashes module metadata (and people log options): describe the registry and guards, do not walk them.
  Object.defineProperty(resolved, 'toJSON', {
    enumerable: false,
    value: () => ({
      enabled, prometheusPath, jsonPath, dashboard, dashboardPath,
      registry: registry === undefined ? 'own' : 'given',
      guards: guards.map((g) => (typeof g === 'function' ? g.name : (g.constructor?.name ?? 'guard'))),
      openTelemetry: openTelemetry === undefined ? false : { meterProvider: openTelemetry.meterProvider === undefined ? 'global' : 'given', meterName: openTelemetry.meterName },
    }),
  });
  return resolved;
}

/** Validates `alerts`; defaults follow the seeds: waiting > 10, usage > 0.8 / 0.9 of max. */
export function resolveAlertOptions(raw: AlertOptions | undefined): ResolvedAlertOptions {
  const alerts = resolveSection(ALERT_OPTIONS, raw, field('alerts'));
  if (alerts.usageCritical < alerts.usageWarn) field('alerts.usageCritical').fail(`a ratio not below usageWarn (${alerts.usageWarn})`, alerts.usageCritical);
  return alerts;
}
