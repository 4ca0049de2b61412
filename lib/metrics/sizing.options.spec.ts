import { resolveOptions } from '../config/resolve-options.js';
import { PoolConfigurationError } from '../pool.exceptions.js';
import type { LoadSizingOptions } from '../pool.interfaces.js';
import { resolveLoadSizingOptions } from './sizing.options.js';

function failure(raw: unknown): PoolConfigurationError {
  try {
    resolveLoadSizingOptions(raw as LoadSizingOptions);
  } catch (err) {
    if (err instanceof PoolConfigurationError) return err;
    throw err;
  }
  throw new Error('expected a PoolConfigurationError');
}

describe('resolveLoadSizingOptions', () => {
  it('has documented defaults', () => {
    expect(resolveLoadSizingOptions(undefined)).toEqual({
      enabled: true,
      windowMs: 60_000,
      buckets: 6,
      sampleIntervalMs: 1000,
      headroom: 0.25,
      saturatedShare: 0.5,
      overProvisionedRatio: 0.25,
      cooldownMs: 300_000,
      log: true,
    });
  });

  it('is part of the resolved options of a database', () => {
    const resolved = resolveOptions({ primary: { host: '127.0.0.1', port: 1 }, loadSizing: { windowMs: 5000, buckets: 5, headroom: 0 }, env: {} });
    expect(resolved.loadSizing).toMatchObject({ windowMs: 5000, buckets: 5, headroom: 0, sampleIntervalMs: 1000 });
  });

  it.each([
    [{ windowMs: 500 }, 'option `loadSizing.windowMs`', '500 (number)'],
    [{ buckets: 0 }, 'option `loadSizing.buckets`', '0 (number)'],
    [{ buckets: 2.5 }, 'option `loadSizing.buckets`', '2.5 (number)'],
    [{ sampleIntervalMs: 10 }, 'option `loadSizing.sampleIntervalMs`', '10 (number)'],
    [{ headroom: -0.1 }, 'option `loadSizing.headroom`', '-0.1 (number)'],
    [{ headroom: '20%' }, 'option `loadSizing.headroom`', '"20%" (string)'],
    [{ saturatedShare: 0 }, 'option `loadSizing.saturatedShare`', '0 (number)'],
    [{ overProvisionedRatio: 1.5 }, 'option `loadSizing.overProvisionedRatio`', '1.5 (number)'],
    [{ cooldownMs: -1 }, 'option `loadSizing.cooldownMs`', '-1 (number)'],
    [{ log: 'yes' }, 'option `loadSizing.log`', '"yes" (string)'],
    [{ enabled: 1 }, 'option `loadSizing.enabled`', '1 (number)'],
    [{ window: 1000 }, 'option `loadSizing.window`', '1000 (number)'],
    ['on', 'option `loadSizing`', '"on" (string)'],
  ])('rejects %j naming the field, what was expected and what was given', (raw, field, given) => {
    const err = failure(raw);
    expect(err.field).toBe(field);
    expect(err.given).toBe(given);
    expect(err.expected.length).toBeGreaterThan(5);
    expect(err.message).toContain(`Invalid ${field}: expected `);
  });

  it('needs at least one sample per slot', () => {
    const err = failure({ windowMs: 10_000, buckets: 20, sampleIntervalMs: 1000 });
    expect(err.field).toBe('option `loadSizing.sampleIntervalMs`');
    expect(err.expected).toBe('an interval of at most one slot (windowMs / buckets = 500ms), so every slot gets a sample');
    expect(err.given).toBe('1000 (number)');
  });
});
