import type { CanActivate, Type } from '@nestjs/common';
import type { Registry, RegistryContentType } from 'prom-client';
import type { OpenTelemetryMeterProvider } from '../pool.interfaces.js';
import { bool, intOption, msOption, nonEmptyString, option, resolveSection, share, type Field } from './option.js';

export type MetricsGuard = Type<CanActivate> | CanActivate;

export interface ResolvedOpenTelemetryOptions {
  /** `undefined`: the global MeterProvider of `@opentelemetry/api`. */
  readonly meterProvider: OpenTelemetryMeterProvider | undefined;
  readonly meterName: string;
}

/** A URL path without leading/trailing slashes. */
export function urlPath(value: unknown, at: Field): string {
  if (typeof value !== 'string') at.fail('a URL path such as "metrics"', value);
  const trimmed = value.trim().replace(/^\/+|\/+$/g, '');
  if (trimmed === '' || /[\s?#]/.test(trimmed)) at.fail('a non-empty URL path without spaces, "?" or "#", such as "metrics"', value);
  return trimmed;
}

function isRegistry(value: unknown): value is Registry<RegistryContentType> {
  const r = value as Registry<RegistryContentType> | null;
  return typeof r === 'object' && r !== null && typeof r.registerMetric === 'function' && typeof r.metrics === 'function' && typeof r.getSingleMetric === 'function';
}

function isGuard(value: unknown): value is MetricsGuard {
  return typeof value === 'function' || (typeof value === 'object' && value !== null && typeof (value as CanActivate).canActivate === 'function');
}

/** `metrics.openTelemetry` given as an object. */
export const OPEN_TELEMETRY_OPTIONS = {
  meterProvider: option({
    type: 'MeterProvider',
    defaultDoc: 'the global one of `@opentelemetry/api`',
    doc: 'The MeterProvider to create the meter from.',
    check: (value: unknown, at: Field): OpenTelemetryMeterProvider | undefined => {
      const provider = value as OpenTelemetryMeterProvider | null;
      if (provider === null || typeof provider !== 'object' || typeof provider.getMeter !== 'function') at.fail('an OpenTelemetry MeterProvider (an object with getMeter())', value);
      return provider as OpenTelemetryMeterProvider;
    },
  }),
  meterName: option({ type: 'string', default: 'nestjs-pg-pools', doc: 'Name of the meter (the instrumentation scope).', check: nonEmptyString }),
} as const;

export const METRICS_OPTIONS = {
  enabled: option({ type: 'boolean', default: true, doc: 'Register the metrics endpoints (Prometheus text, JSON, dashboard) and metrics at all.', check: bool }),
  prometheusPath: option({
    type: 'string | false',
    default: 'metrics',
    doc: 'Path of the Prometheus endpoint, or `false` for none (the metrics still go into `registry`).',
    check: (value: unknown, at: Field): string | false => (value === false ? false : urlPath(value, at)),
  }),
  jsonPath: option({ type: 'string', default: 'metrics/db-pool', doc: 'Path of the JSON endpoint (every database and node).', check: urlPath }),
  dashboard: option({ type: 'boolean', defaultDoc: 'unset', doc: 'Serve the live dashboard page; unset serves it except when the first database uses the `production` preset.', check: (value: unknown, at: Field): boolean | undefined => bool(value, at) }),
  dashboardPath: option({ type: 'string', defaultDoc: '`<jsonPath>/dashboard`', doc: 'Path of the dashboard page.', check: (value: unknown, at: Field): string | undefined => urlPath(value, at) }),
  registry: option({
    type: 'prom-client Registry',
    defaultDoc: 'a new `Registry` per app',
    doc: 'A prom-client `Registry` to register the `db_*` metrics into.',
    check: (value: unknown, at: Field): Registry<RegistryContentType> | undefined => {
      if (!isRegistry(value)) at.fail("a prom-client Registry (new Registry() or prom-client's global `register`)", value);
      return value;
    },
  }),
  guards: option({
    type: 'guard[]',
    default: [] as readonly MetricsGuard[],
    defaultDoc: 'none',
    doc: 'Guards (classes or instances) that protect every metrics endpoint.',
    check: (value: unknown, at: Field): readonly MetricsGuard[] => {
      if (!Array.isArray(value)) at.fail('an array of guard classes or instances (CanActivate)', value);
      value.forEach((g: unknown, i: number) => {
        if (!isGuard(g)) at.at(`[${i}]`).fail('a guard class or an object with canActivate()', g);
      });
      return value as MetricsGuard[];
    },
  }),
  openTelemetry: option({
    type: 'boolean | { meterProvider?, meterName? }',
    default: undefined,
    defaultDoc: '`false`',
    doc: 'Also report the pools as OpenTelemetry metrics: `true` (the global MeterProvider) or `{ meterProvider, meterName }`.',
    check: (value: unknown, at: Field): ResolvedOpenTelemetryOptions | undefined => {
      if (value === false) return undefined;
      if (value === true) return { meterProvider: undefined, meterName: OPEN_TELEMETRY_OPTIONS.meterName.default };
      return resolveSection(OPEN_TELEMETRY_OPTIONS, value, at, { expected: 'true, false or { meterProvider, meterName }' });
    },
  }),
} as const;

export const ALERT_OPTIONS = {
  enabled: option({ type: 'boolean', default: true, doc: 'Check pool alerts at all.', check: bool }),
  waitingThreshold: option({ ...intOption(0), default: 10, doc: '`pool-waiting` fires above this many waiting callers.' }),
  usageWarn: option({ type: 'share (0, 1]', default: 0.8, doc: '`pool-usage-high` fires above this share of `max`.', check: share('a number greater than 0 and at most 1 (a share of max)') }),
  usageCritical: option({ type: 'share (0, 1]', default: 0.9, doc: '`pool-usage-critical` fires above this share of `max` (not below `usageWarn`).', check: share('a number greater than 0 and at most 1 (a share of max)') }),
  cooldownMs: option({ ...msOption(0), default: 60_000, doc: 'Minimum time between two alerts of the same kind on the same node.' }),
  intervalMs: option({ ...msOption(100), default: 1000, doc: 'How often the pools are checked.' }),
  log: option({ type: 'boolean', default: true, doc: "Log each alert through Nest's `Logger`; `false` only emits the event.", check: bool }),
} as const;

export const LOAD_SIZING_OPTIONS = {
  enabled: option({ type: 'boolean', default: true, doc: 'Keep the rolling load view of every pool and suggest a max.', check: bool }),
  windowMs: option({ ...msOption(1000), default: 60_000, doc: 'Length of the rolling window.' }),
  buckets: option({ ...intOption(1, 600), default: 6, doc: 'Fixed slots the window is kept in; the suggestion comes from the busiest one.' }),
  sampleIntervalMs: option({ ...msOption(50), default: 1000, doc: 'How often each pool is sampled (at most `windowMs / buckets`).' }),
  headroom: option({
    type: 'number 0–10',
    default: 0.25,
    doc: 'Share added above the observed load; `0.25` keeps the mean at 80 % of the suggested max.',
    check: share('a number from 0 to 10 (0.25 adds 25% above the observed load)', 0, 10, true),
  }),
  saturatedShare: option({
    type: 'share (0, 1]',
    default: 0.5,
    doc: "`saturated` fires when callers were waiting at this share (or more) of the window's samples.",
    check: share('a number greater than 0 and at most 1 (a share of the samples in the window)'),
  }),
  overProvisionedRatio: option({
    type: 'share (0, 1]',
    default: 0.25,
    doc: '`over-provisioned` fires when, over a whole window, no caller waited and the peak in use stayed at or below this share of `max`.',
    check: share('a number greater than 0 and at most 1 (a share of max)'),
  }),
  cooldownMs: option({ ...msOption(0), default: 300_000, doc: 'Minimum time between two warnings of the same kind for the same pool.' }),
  log: option({ type: 'boolean', default: true, doc: "Log each warning through Nest's `Logger`; `false` only emits the `sizing-advice` event.", check: bool }),
} as const;
