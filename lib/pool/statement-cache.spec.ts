import { resolvePreparedStatements } from '../config/prepared-statements.options.js';
import { PoolConfigurationError } from '../pool.exceptions.js';
import { CACHED_STATEMENT_PREFIX } from './session-reset.js';
import { isInvalidatedPlan, planConfig, StatementCache } from './statement-cache.js';

function cache(threshold: number, cacheSize: number, pgbouncer = false) {
  const counters = { preparedHits: 0, preparedMisses: 0, preparedEvictions: 0, preparedInvalidations: 0 };
  let retired = 0;
  const settings = { ...resolvePreparedStatements({ threshold, cacheSize, pgbouncerProtocol: pgbouncer }, pgbouncer) };
  const c = new StatementCache(settings, counters, () => retired++);
  return { c, counters, retired: () => retired };
}

describe('StatementCache', () => {
  it('prepares a text with values on its threshold-th send, under a fresh __pgp_ name, then hits', () => {
    const { c, counters } = cache(3, 10);
    expect(c.plan('select $1', [1])).toBeUndefined();
    expect(c.plan('select $1', [2])).toBeUndefined();
    const prepared = c.plan('select $1', [3])!;
    expect(prepared.name.startsWith(CACHED_STATEMENT_PREFIX)).toBe(true);
    expect(planConfig(prepared)).toEqual({ name: prepared.name, text: 'select $1', values: [3] });
    const parsers = { getTypeParser: () => String };
    const hit = c.plan({ text: 'select $1', rowMode: 'array', types: parsers, name: undefined }, [4])!;
    expect(planConfig(hit)).toEqual({ name: prepared.name, text: 'select $1', rowMode: 'array', types: parsers, values: [4] });
    expect(counters).toMatchObject({ preparedMisses: 3, preparedHits: 1 });
  });

  it('leaves statements without values, with their own name, with parameter type OIDs or in simple mode alone', () => {
    const { c, counters } = cache(1, 10);
    expect(c.plan('select 1', undefined)).toBeUndefined();
    expect(c.plan('select 1', [])).toBeUndefined();
    expect(c.plan({ text: 'select $1', name: 'mine', values: [1] }, undefined)).toBeUndefined();
    expect(c.plan({ text: 'select $1', types: [23], values: [1] }, undefined)).toBeUndefined();
    expect(c.plan({ text: 'select $1', queryMode: 'simple', values: [1] }, undefined)).toBeUndefined();
    expect(counters.preparedMisses).toBe(0);
  });

  it('evicts the least recently used beyond cacheSize, deallocating it before the new one, and never reuses a name', () => {
    const { c, counters } = cache(1, 2);
    const a = c.plan('a $1', [1])!;
    const b = c.plan('b $1', [1])!;
    expect(c.plan('a $1', [1])!.name).toBe(a.name);
    const d = c.plan('d $1', [1])!;
    expect(d.drop).toEqual([b.name]);
    expect(c.size).toBe(2);
    expect(counters.preparedEvictions).toBe(1);
    const b2 = c.plan('b $1', [1])!;
    expect(b2.drop).toEqual([a.name]);
    expect(new Set([a.name, b.name, d.name, b2.name]).size).toBe(4);
  });

  it('keeps the order of use when the most recent statement runs again (no move needed)', () => {
    const { c } = cache(1, 2);
    const a = c.plan('a $1', [1])!;
    c.plan('b $1', [1]);
    c.plan('b $1', [1]);
    c.plan('a $1', [1]);
    c.plan('a $1', [1]);
    const b = c.plan('b $1', [1])!;
    expect(c.plan('e $1', [1])!.drop).toEqual([a.name]);
    expect(c.plan('b $1', [1])!.name).toBe(b.name);
  });

  it('forgets an invalidated plan (deallocating a 0A000 one), re-sends a failed DEALLOCATE later, and retires the connection after many dropped names', () => {
    const { c, counters, retired } = cache(1, 1);
    const p = c.plan('x $1', [1])!;
    expect(c.invalidated(p, { code: '0A000' })).toBe(p.name);
    expect(c.invalidated(p, { code: '0A000' })).toBeUndefined();
    expect(counters.preparedInvalidations).toBe(1);
    const q = c.plan('x $1', [1])!;
    expect(q.name).not.toBe(p.name);
    expect(c.invalidated(q, { code: '26000' })).toBeUndefined();
    c.deallocationFailed('__pgp_left');
    expect(c.plan('y $1', [1])!.drop).toEqual(['__pgp_left']);
    c.plan('z $1', [1]);
    expect(retired()).toBe(0);
    c.plan('w $1', [1]);
    expect(retired()).toBe(1);
  });

  it('sends no DEALLOCATE behind PgBouncer (it bounds the server side itself)', () => {
    const { c } = cache(1, 1, true);
    c.plan('a $1', [1]);
    expect(c.plan('b $1', [1])!.drop).toEqual([]);
  });

  it('bounds the texts it counts towards the threshold', () => {
    const { c } = cache(2, 2);
    c.plan('a $1', [1]);
    c.plan('b $1', [1]);
    c.plan('c $1', [1]);
    expect(c.plan('a $1', [1])).toBeUndefined();
    expect(c.plan('c $1', [1])).toBeDefined();
  });

  it('knows the refusals it handles', () => {
    expect(isInvalidatedPlan({ code: '26000', message: 'prepared statement "__pgp_1" does not exist' })).toBe(true);
    expect(isInvalidatedPlan({ code: '0A000', message: 'cached plan must not change result type' })).toBe(true);
    expect(isInvalidatedPlan({ code: '0A000', message: 'something else not supported' })).toBe(false);
    expect(isInvalidatedPlan(null)).toBe(false);
  });
});

describe('preparedStatements option', () => {
  it('defaults to on (threshold 3, 100 per connection), off behind PgBouncer unless declared', () => {
    expect(resolvePreparedStatements(undefined, false)).toMatchObject({ enabled: true, threshold: 3, cacheSize: 100 });
    expect(resolvePreparedStatements(undefined, true).enabled).toBe(false);
    expect(resolvePreparedStatements({ pgbouncerProtocol: true }, true)).toMatchObject({ enabled: true, pgbouncerProtocol: true, viaPgBouncer: true });
  });

  it('names the field, what was expected and what was given', () => {
    expect(() => resolvePreparedStatements({ cacheSize: 0 }, false)).toThrow(PoolConfigurationError);
    expect(() => resolvePreparedStatements({ cacheSize: 0 }, false)).toThrow(/preparedStatements\.cacheSize.*integer from 1.*got 0/);
    expect(() => resolvePreparedStatements({ threshold: '3' } as never, false)).toThrow(/preparedStatements\.threshold/);
    expect(() => resolvePreparedStatements({ size: 3 } as never, false)).toThrow(/preparedStatements\.size/);
  });
});
