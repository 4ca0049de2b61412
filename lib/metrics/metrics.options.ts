import type { CanActivate, Type } from '@nestjs/common';
import { MAX_TIMER_MS, msRange } from '../config/timer-limit.js';
import type { Registry, RegistryContentType } from 'prom-client';
import { describeValue } from '../config/redact.js';
import { PoolConfigurationError } from '../pool.exceptions.js';
import type { AlertOptions, MetricsOptions, OpenTelemetryMeterProvider } from '../pool.interfaces.js';

export type MetricsGuard = Type<CanActivate> | CanActivate;

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

export interface ResolvedOpenTelemetryOptions {
  /** `undefined`: the global MeterProvider of `@opentelemetry/api`. */
  readonly meterProvider: OpenTelemetryMeterProvider | undefined;
  readonly meterName: string;
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

const METRICS_KEYS = new Set(['enabled', 'prometheusPath', 'jsonPath', 'dashboard', 'dashboardPath', 'registry', 'guards', 'openTelemetry']);
const OTEL_KEYS = new Set(['meterProvider', 'meterName']);
const ALERT_KEYS = new Set(['enabled', 'waitingThreshold', 'usageWarn', 'usageCritical', 'cooldownMs', 'intervalMs', 'log']);

export function fail(path: string, expected: string, value: unknown, hint?: string): never {
  throw new PoolConfigurationError(`option \`${path}\``, expected, describeValue(value), hint);
}

export function checkObject(path: string, value: unknown, known: Set<string>): Record<string, unknown> {
  if (value === undefined) return {};
  if (value === null || typeof value !== 'object' || Array.isArray(value)) fail(path, 'an object', value);
  for (const key of Object.keys(value)) {
    if (!known.has(key)) fail(`${path}.${key}`, `one of the known options (${[...known].join(', ')})`, (value as Record<string, unknown>)[key]);
  }
  return value as Record<string, unknown>;
}

export function checkBool(path: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') fail(path, 'true or false', value);
  return value;
}

function checkPath(path: string, value: unknown, fallback: string): string {
  if (value === undefined) return fallback;
  if (typeof value !== 'string') fail(path, 'a URL path such as "metrics"', value);
  const trimmed = value.trim().replace(/^\/+|\/+$/g, '');
  if (trimmed === '' || /[\s?#]/.test(trimmed)) fail(path, 'a non-empty URL path without spaces, "?" or "#", such as "metrics"', value);
  return trimmed;
}

export function checkInt(path: string, value: unknown, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    fail(path, max === MAX_TIMER_MS ? msRange(min) : `an integer from ${min} and up`, value);
  }
  return value;
}

export function checkRatio(path: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0 || value > 1) fail(path, 'a number greater than 0 and at most 1 (a share of max)', value);
  return value;
}

function isRegistry(value: unknown): value is Registry<RegistryContentType> {
  const r = value as Registry<RegistryContentType> | null;
  return typeof r === 'object' && r !== null && typeof r.registerMetric === 'function' && typeof r.metrics === 'function' && typeof r.getSingleMetric === 'function';
}

function isGuard(value: unknown): value is MetricsGuard {
  return typeof value === 'function' || (typeof value === 'object' && value !== null && typeof (value as CanActivate).canActivate === 'function');
}

function resolveOpenTelemetry(raw: unknown): ResolvedOpenTelemetryOptions | undefined {
  if (raw === undefined || raw === false) return undefined;
  if (raw === true) return { meterProvider: undefined, meterName: 'nestjs-pg-pools' };
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) fail('metrics.openTelemetry', 'true, false or { meterProvider, meterName }', raw);
  const input = checkObject('metrics.openTelemetry', raw, OTEL_KEYS);
  const provider = input.meterProvider as OpenTelemetryMeterProvider | undefined;
  if (provider !== undefined && (provider === null || typeof provider !== 'object' || typeof provider.getMeter !== 'function')) {
    fail('metrics.openTelemetry.meterProvider', 'an OpenTelemetry MeterProvider (an object with getMeter())', provider);
  }
  const meterName = input.meterName ?? 'nestjs-pg-pools';
  if (typeof meterName !== 'string' || meterName.trim() === '') fail('metrics.openTelemetry.meterName', 'a non-empty string', meterName);
  return { meterProvider: provider, meterName };
}

/** Validates `metrics` (the same rules in `forRoot`, `forRootAsync` and the options resolver). */
export function resolveMetricsOptions(raw: MetricsOptions | undefined): ResolvedMetricsOptions {
  const input = checkObject('metrics', raw, METRICS_KEYS);
  const enabled = checkBool('metrics.enabled', input.enabled, true);
  const prometheusPath = input.prometheusPath === false ? false : checkPath('metrics.prometheusPath', input.prometheusPath, 'metrics');
  const jsonPath = checkPath('metrics.jsonPath', input.jsonPath, 'metrics/db-pool');
  const dashboard = input.dashboard === undefined ? undefined : checkBool('metrics.dashboard', input.dashboard, false);
  const dashboardPath = checkPath('metrics.dashboardPath', input.dashboardPath, `${jsonPath}/dashboard`);
  const paths = [prometheusPath, jsonPath, dashboardPath].filter((p): p is string => p !== false);
  if (new Set(paths).size !== paths.length) {
    fail('metrics', 'distinct paths for prometheusPath, jsonPath and dashboardPath', paths.join(', '));
  }
  if (input.registry !== undefined && !isRegistry(input.registry)) {
    fail('metrics.registry', "a prom-client Registry (new Registry() or prom-client's global `register`)", input.registry);
  }
  const guards = input.guards ?? [];
  if (!Array.isArray(guards)) fail('metrics.guards', 'an array of guard classes or instances (CanActivate)', guards);
  guards.forEach((g, i) => {
    if (!isGuard(g)) fail(`metrics.guards[${i}]`, 'a guard class or an object with canActivate()', g);
  });
  const openTelemetry = resolveOpenTelemetry(input.openTelemetry);
  const resolved: ResolvedMetricsOptions = {
    enabled, prometheusPath, jsonPath, dashboard, dashboardPath, registry: input.registry as Registry<RegistryContentType> | undefined, guards, openTelemetry,
  };
  // Nest hashes module metadata (and people log options): describe the registry and guards, do not walk them.
  Object.defineProperty(resolved, 'toJSON', {
    enumerable: false,
    value: () => ({
      enabled, prometheusPath, jsonPath, dashboard, dashboardPath,
      registry: resolved.registry === undefined ? 'own' : 'given',
      guards: guards.map((g) => (typeof g === 'function' ? g.name : (g.constructor?.name ?? 'guard'))),
      openTelemetry: openTelemetry === undefined ? false : { meterProvider: openTelemetry.meterProvider === undefined ? 'global' : 'given', meterName: openTelemetry.meterName },
    }),
  });
  return resolved;
}

/** Validates `alerts`; defaults follow the seeds: waiting > 10, usage > 0.8 / 0.9 of max. */
export function resolveAlertOptions(raw: AlertOptions | undefined): ResolvedAlertOptions {
  const input = checkObject('alerts', raw, ALERT_KEYS);
  const usageWarn = checkRatio('alerts.usageWarn', input.usageWarn, 0.8);
  const usageCritical = checkRatio('alerts.usageCritical', input.usageCritical, 0.9);
  if (usageCritical < usageWarn) fail('alerts.usageCritical', `a ratio not below usageWarn (${usageWarn})`, usageCritical);
  return {
    enabled: checkBool('alerts.enabled', input.enabled, true),
    waitingThreshold: checkInt('alerts.waitingThreshold', input.waitingThreshold, 10, 0),
    usageWarn,
    usageCritical,
    cooldownMs: checkInt('alerts.cooldownMs', input.cooldownMs, 60_000, 0, MAX_TIMER_MS),
    intervalMs: checkInt('alerts.intervalMs', input.intervalMs, 1000, 100, MAX_TIMER_MS),
    log: checkBool('alerts.log', input.log, true),
  };
}
