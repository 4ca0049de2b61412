import { Registry } from 'prom-client';
import { resolveOptions } from '../config/resolve-options.js';
import { PoolConfigurationError } from '../pool.exceptions.js';
import { dashboardSecurityPolicy, jsonUrlFor } from './metrics.controller.js';
import { resolveAlertOptions, resolveMetricsOptions } from './metrics.options.js';
import { renderDashboardPage } from './dashboard.page.js';
import { createHash } from 'node:crypto';

describe('resolveMetricsOptions', () => {
  it('has documented defaults', () => {
    expect(resolveMetricsOptions(undefined)).toMatchObject({
      enabled: true,
      prometheusPath: 'metrics',
      jsonPath: 'metrics/db-pool',
      dashboard: undefined,
      dashboardPath: 'metrics/db-pool/dashboard',
      registry: undefined,
      guards: [],
    });
  });

  it('openTelemetry: off by default; true = the global provider; an object names its provider and meter; bad values name the field', () => {
    expect(resolveMetricsOptions(undefined).openTelemetry).toBeUndefined();
    expect(resolveMetricsOptions({ openTelemetry: false }).openTelemetry).toBeUndefined();
    expect(resolveMetricsOptions({ openTelemetry: true }).openTelemetry).toEqual({ meterProvider: undefined, meterName: 'nestjs-pg-pools' });
    const meterProvider = { getMeter: () => ({}) };
    const given = resolveMetricsOptions({ openTelemetry: { meterProvider, meterName: 'billing-db' } });
    expect(given.openTelemetry).toEqual({ meterProvider, meterName: 'billing-db' });
    expect(JSON.parse(JSON.stringify(given)).openTelemetry).toEqual({ meterProvider: 'given', meterName: 'billing-db' });
    const bad = (value: unknown) => () => resolveMetricsOptions({ openTelemetry: value } as never);
    expect(bad('yes')).toThrow('Invalid option `metrics.openTelemetry`: expected true, false or { meterProvider, meterName }, got "yes" (string).');
    expect(bad({ meterProvider: {} })).toThrow('Invalid option `metrics.openTelemetry.meterProvider`: expected an OpenTelemetry MeterProvider (an object with getMeter()), got');
    expect(bad({ meterName: '' })).toThrow('Invalid option `metrics.openTelemetry.meterName`: expected a non-empty string, got "" (string).');
    expect(bad({ provider: meterProvider })).toThrow(PoolConfigurationError);
  });

  it('normalises paths, derives the dashboard path from jsonPath, accepts prometheusPath false', () => {
    const r = resolveMetricsOptions({ prometheusPath: false, jsonPath: '/ops/pools/', dashboard: true });
    expect(r).toMatchObject({ prometheusPath: false, jsonPath: 'ops/pools', dashboardPath: 'ops/pools/dashboard', dashboard: true });
  });

  it('accepts a registry and guards, and describes them (not walks them) as JSON', () => {
    class TokenGuard {
      canActivate() {
        return true;
      }
    }
    const registry = new Registry();
    const r = resolveMetricsOptions({ registry, guards: [TokenGuard, { canActivate: () => true }] });
    expect(r.registry).toBe(registry);
    expect(JSON.parse(JSON.stringify(r))).toEqual({
      enabled: true,
      prometheusPath: 'metrics',
      jsonPath: 'metrics/db-pool',
      dashboardPath: 'metrics/db-pool/dashboard',
      registry: 'given',
      guards: ['TokenGuard', 'Object'],
      openTelemetry: false,
    });
  });

  it.each([
    [{ jsonPath: '' }, 'Invalid option `metrics.jsonPath`: expected a non-empty URL path without spaces, "?" or "#", such as "metrics", got "" (string).'],
    [{ prometheusPath: 'a b' }, 'Invalid option `metrics.prometheusPath`: expected a non-empty URL path without spaces, "?" or "#", such as "metrics", got "a b" (string).'],
    [{ prometheusPath: 42 }, 'Invalid option `metrics.prometheusPath`: expected a URL path such as "metrics", got 42 (number).'],
    [{ enabled: 'yes' }, 'Invalid option `metrics.enabled`: expected true or false, got "yes" (string).'],
    [{ registry: {} }, "Invalid option `metrics.registry`: expected a prom-client Registry (new Registry() or prom-client's global `register`), got an empty object {}."],
    [{ guards: 'AuthGuard' }, 'Invalid option `metrics.guards`: expected an array of guard classes or instances (CanActivate), got "AuthGuard" (string).'],
    [{ guards: [{}] }, 'Invalid option `metrics.guards[0]`: expected a guard class or an object with canActivate(), got an empty object {}.'],
    [{ jsonPath: 'metrics' }, 'Invalid option `metrics`: expected distinct paths for prometheusPath, jsonPath and dashboardPath, got "metrics, metrics, metrics/dashboard" (string).'],
    [{ dashbord: true }, 'Invalid option `metrics.dashbord`: expected one of the known options (enabled, prometheusPath, jsonPath, dashboard, dashboardPath, registry, guards, openTelemetry), got true (boolean).'],
  ])('rejects %j with one error naming the field', (input, message) => {
    expect(() => resolveMetricsOptions(input as never)).toThrow(PoolConfigurationError);
    expect(() => resolveMetricsOptions(input as never)).toThrow(message);
  });
});

describe('resolveAlertOptions', () => {
  it('has the seed thresholds as defaults', () => {
    expect(resolveAlertOptions(undefined)).toEqual({ enabled: true, waitingThreshold: 10, usageWarn: 0.8, usageCritical: 0.9, cooldownMs: 60_000, intervalMs: 1000, log: true });
  });

  it.each([
    [{ usageWarn: 1.5 }, 'Invalid option `alerts.usageWarn`: expected a number greater than 0 and at most 1 (a share of max), got 1.5 (number).'],
    [{ usageWarn: 0.95 }, 'Invalid option `alerts.usageCritical`: expected a ratio not below usageWarn (0.95), got 0.9 (number).'],
    [{ waitingThreshold: -1 }, 'Invalid option `alerts.waitingThreshold`: expected an integer from 0 and up, got -1 (number).'],
    [{ intervalMs: 10 }, 'Invalid option `alerts.intervalMs`: expected an integer from 100 to 2147483647 (the longest delay a Node.js timer can wait, about 24.8 days), got 10 (number).'],
    [{ cooldown: 5 }, 'Invalid option `alerts.cooldown`: expected one of the known options (enabled, waitingThreshold, usageWarn, usageCritical, cooldownMs, intervalMs, log), got 5 (number).'],
  ])('rejects %j', (input, message) => {
    expect(() => resolveAlertOptions(input as never)).toThrow(message);
  });

  it('is part of the resolved module options', () => {
    const resolved = resolveOptions({ primary: { host: 'h' }, alerts: { waitingThreshold: 3 }, metrics: { jsonPath: 'pools' }, env: {} });
    expect(resolved.alerts.waitingThreshold).toBe(3);
    expect(resolved.metrics.jsonPath).toBe('pools');
    expect(() => resolveOptions({ primary: { host: 'h' }, alerts: { usageWarn: 2 }, env: {} })).toThrow('`alerts.usageWarn`');
  });
});

describe('dashboard page', () => {
  const config = resolveMetricsOptions(undefined);

  it('polls the JSON path under the same prefix the page was served from', () => {
    expect(jsonUrlFor({ originalUrl: '/metrics/db-pool/dashboard' }, config)).toBe('/metrics/db-pool');
    expect(jsonUrlFor({ originalUrl: '/api/v1/metrics/db-pool/dashboard/?token=x' }, config)).toBe('/api/v1/metrics/db-pool');
    expect(jsonUrlFor({ url: '/elsewhere' }, config)).toBe('/metrics/db-pool');
  });

  it('is self-contained: no external URL, script and style allowed by hash only', () => {
    const html = renderDashboardPage({ jsonUrl: '/metrics/db-pool' });
    expect(html).not.toMatch(/(src|href)=["']?(https?:)?\/\//i);
    expect(html).not.toMatch(/@import|url\(/);
    const csp = dashboardSecurityPolicy(html);
    const script = /<script>([\s\S]*?)<\/script>/.exec(html)![1]!;
    expect(csp).toContain(`script-src 'sha256-${createHash('sha256').update(script).digest('base64')}'`);
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("connect-src 'self'");
  });

  it('embeds its configuration as inert JSON that cannot close the script tag', () => {
    const html = renderDashboardPage({ jsonUrl: '/x/</script><script>alert(1)</script>' });
    expect(html).not.toContain('</script><script>alert(1)');
    expect(html).toContain('\\u003c/script\\u003e');
  });
});
