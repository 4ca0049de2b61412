import { PoolConfigurationError } from '../pool.exceptions.js';
import type { PoolModuleRootOptions } from '../pool.interfaces.js';
import { field, resolveSection } from './option.js';
import { renderOptionsTable } from './options-table.js';
import { pgPoolOptionsView } from './pg-pool-names.js';
import { resolveOptions } from './resolve-options.js';
import { HEALTH_SCHEMA, MODULE_SCHEMA, schemaRows } from './schema.js';
import { HEALTH_CHECK_OPTIONS } from './schema.health.js';

const resolve = (options: Record<string, unknown>, env: Record<string, string> = {}) =>
  resolveOptions({ primary: { host: 'db' }, env, ...options } as PoolModuleRootOptions);

function message(run: () => unknown): string {
  try {
    run();
  } catch (err) {
    expect(err).toBeInstanceOf(PoolConfigurationError);
    return (err as Error).message;
  }
  throw new Error('expected a PoolConfigurationError');
}

describe('option schema: pg-pool names', () => {
  it('reads idleTimeoutMillis, connectionTimeoutMillis, maxLifetimeSeconds and poolSize as the module settings, on a node and database-wide', () => {
    const wide = resolve({ idleTimeoutMillis: 1234, connectionTimeoutMillis: 2345, maxLifetimeSeconds: 60, poolSize: 7 });
    const node = resolve({ primary: { host: 'db', idleTimeoutMillis: 1234, connectionTimeoutMillis: 2345, maxLifetimeSeconds: 60, poolSize: 7 } });
    for (const { primary } of [wide, node]) {
      expect(primary).toMatchObject({ idleTimeoutMs: 1234, acquireTimeoutMs: 2345, maxLifetimeMs: 60_000, max: 7, connectTimeoutMs: 5000 });
      expect(primary.poolConfig).toMatchObject({ idleTimeoutMillis: 1234, connectionTimeoutMillis: 2345, max: 7 });
      expect(pgPoolOptionsView(primary)).toEqual({ max: 7, min: 5, idleTimeoutMillis: 1234, connectionTimeoutMillis: 2345, maxUses: 50_000 });
    }
  });

  it("reads pg's keepAliveInitialDelayMillis and keepAlive: false as keepAliveMs, never overwritten by the preset", () => {
    expect(resolve({ primary: { host: 'db', keepAliveInitialDelayMillis: 3000 } }).primary.poolConfig).toMatchObject({ keepAlive: true, keepAliveInitialDelayMillis: 3000 });
    expect(resolve({ keepAliveInitialDelayMillis: 3000 }).primary.keepAliveMs).toBe(3000);
    const off = resolve({ primary: { host: 'db', keepAlive: false } });
    expect(off.primary.keepAliveMs).toBe(0);
    expect(off.primary.poolConfig.keepAlive).toBe(false);
    expect(resolve({ keepAlive: false }).primary.keepAliveMs).toBe(0);
    expect(message(() => resolve({ primary: { host: 'db', keepAlive: false, keepAliveMs: 5000 } }))).toBe(
      'Invalid option `primary.keepAlive`: expected true, or no `keepAlive` while `primary.keepAliveMs` is 5000, got false (boolean). Give `keepAliveMs: 0` to turn keep-alive off.',
    );
  });

  it('gives a translated value the precedence and bounds of the module setting', () => {
    const overridden = resolve({ idleTimeoutMillis: 1000, primary: { host: 'db', idleTimeoutMillis: 2000 } }, { DB_POOL_IDLE_TIMEOUT_MS: '3000' });
    expect(overridden.primary.idleTimeoutMs).toBe(3000);
    expect(resolve({ idleTimeoutMillis: 1000, primary: { host: 'db', idleTimeoutMillis: 2000 } }).primary.idleTimeoutMs).toBe(2000);
    expect(message(() => resolve({ connectionTimeoutMillis: 3_000_000_000 }))).toBe(
      'Invalid option `acquireTimeoutMs`: expected an integer from 1 to 2147483647 (the longest delay a Node.js timer can wait, about 24.8 days), got 3000000000 (number).',
    );
  });

  it('refuses connectionTimeoutMillis 0 and a pg-pool name that disagrees with the module name, at both levels', () => {
    expect(message(() => resolve({ connectionTimeoutMillis: 0 }))).toMatch(/^Invalid option `connectionTimeoutMillis`: expected a number of milliseconds from 1 and up, got 0 \(number\)\. pg-pool reads 0/);
    expect(message(() => resolve({ primary: { host: 'db', connectionTimeoutMillis: 0 } }))).toMatch(/^Invalid option `primary\.connectionTimeoutMillis`/);
    expect(message(() => resolve({ idleTimeoutMillis: 100, idleTimeoutMs: 200 }))).toBe(
      'Invalid option `idleTimeoutMillis`: expected the same setting as `idleTimeoutMs` (200), or only one of them, got 100 (number). `idleTimeoutMillis` is pg-pool\'s name for `idleTimeoutMs`: give one.',
    );
    expect(message(() => resolve({ log: 'yes' }))).toMatch(/^Invalid option `log`: expected one of the known options/);
  });
});

describe('option schema: one validator for every section', () => {
  it.each([
    [{ metrics: { dashbord: true } }, 'Did you mean `metrics.dashboard`?'],
    [{ metrics: { openTelemetry: { meterNme: 'x' } } }, 'Did you mean `metrics.openTelemetry.meterName`?'],
    [{ alerts: { cooldown: 5 } }, 'Did you mean `alerts.cooldownMs`?'],
    [{ loadSizing: { window: 1000 } }, 'Did you mean `loadSizing.windowMs`?'],
    [{ preparedStatements: { treshold: 2 } }, 'Did you mean `preparedStatements.threshold`?'],
    [{ session: { secrets: ['x'] } }, 'Did you mean `session.secret`?'],
    [{ failover: { holdWriteMs: 1 } }, 'Did you mean `failover.holdWritesMs`?'],
    [{ monitor: { interval: 1 } }, 'Did you mean `monitor.intervalMs`?'],
  ])('%j: names the field and suggests the known key', (options, hint) => {
    expect(message(() => resolve(options))).toMatch(new RegExp(`^Invalid option \`[a-zA-Z.]+\`: expected one of the known options \\(.*\\), got .*\\. ${hint.replace(/[.?]/g, '\\$&')}$`));
  });

  it('names a health-check option as the indicator does', () => {
    const label = (path: string) => `PoolHealthIndicator.check() option \`${path || 'options'}\``;
    const check = (raw: unknown) => () => resolveSection(HEALTH_CHECK_OPTIONS, raw, field('', label));
    expect(check(undefined)()).toEqual({ database: undefined, timeoutMs: 1000, requireReplicas: false });
    expect(check({ requireReplicas: -1 })).toThrow('Invalid PoolHealthIndicator.check() option `requireReplicas`: expected true, false or an integer from 0 and up, got -1 (number).');
    expect(check({ timeoutMS: 5 })).toThrow('Did you mean `timeoutMs`?');
    expect(check('x')).toThrow('Invalid PoolHealthIndicator.check() option `options`: expected an object, got "x" (string).');
  });
});

describe('option schema: the options table', () => {
  it('has a row per option with its type, default, environment variable and doc', () => {
    const table = renderOptionsTable([...MODULE_SCHEMA, ...HEALTH_SCHEMA]);
    for (const { label } of schemaRows([...MODULE_SCHEMA, ...HEALTH_SCHEMA])) expect(table).toContain(`| ${label} |`);
    expect(table).toContain('| `max` | integer ≥ 1 | preset: 20 / 50 / 5 | `DB_POOL_MAX_SIZE` | Maximum connections per pool. |');
    expect(table).toContain('| `routing.replicaBanMs` | ms ≥ 0 | `30000` |  |');
  });
});
