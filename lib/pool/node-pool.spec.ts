import type { EventEmitter } from 'node:events';
import type { PoolClient, QueryResult } from 'pg';
import { FakeClient } from '../../test/support/fake-pg-client.js';
import { resolveOptions } from '../config/resolve-options.js';
import { checkoutOf, ownError, releasedWith, setGate } from './checkout.js';
import { NodePool, type NodeHost } from './node-pool.js';
import type { PoolModuleOptions } from '../pool.interfaces.js';
import { ClientReleasedError, PoolAcquireTimeoutError, PoolStatementTimeoutError } from '../pool.exceptions.js';
import type { PoolEvent } from '../pool.events.js';

// The library's pool driven by a fake pg.Client: no server, so acquire order, deadlines, the
// lent handle and the release rules are checked in milliseconds. e2e (test/) stays the proof of
// what a user sees against real servers.

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A NodePool over FakeClient; `nodeExtra` sets resolved node fields directly (e.g. a leak threshold below what validation accepts, to keep the spec fast). */
function makePool(
  options: Partial<PoolModuleOptions> = {},
  hostExtra: Partial<NodeHost> = {},
  nodeExtra: Record<string, unknown> = {},
): { pool: NodePool; events: PoolEvent[]; warnings: string[] } {
  const resolved = resolveOptions({ primary: { host: '127.0.0.1', port: 1, user: 'u', password: 'node-pool-spec', database: 'd' }, preset: 'test', env: {}, lazy: true, min: 0, max: 2, ...options });
  const node = { ...resolved.primary, ...nodeExtra };
  Object.defineProperty(node, 'poolConfig', { value: { ...resolved.primary.poolConfig, Client: FakeClient } });
  const events: PoolEvent[] = [];
  const warnings: string[] = [];
  const host: NodeHost = {
    slowQueryMs: 0,
    retryAttempts: 1,
    retryDelayMs: 1,
    breaker: { failureThreshold: 5, resetTimeoutMs: 1000 },
    emitting: true,
    emit: (e) => events.push(e),
    initClient: () => Promise.resolve(),
    warn: (m) => warnings.push(m),
    scrub: (m) => m,
    ...hostExtra,
  };
  return { pool: new NodePool(node as typeof resolved.primary, host), events, warnings };
}

const clientOf = async (p: Promise<QueryResult>) => (await p).rows[0].client as number;

describe('NodePool (fake client)', () => {
  const pools: NodePool[] = [];
  const track = (made: ReturnType<typeof makePool>) => {
    pools.push(made.pool);
    return made;
  };

  beforeEach(() => {
    FakeClient.silent = false;
    FakeClient.refuse = false;
    FakeClient.full = false;
    FakeClient.failOn = undefined;
  });

  afterEach(async () => {
    FakeClient.silent = false;
    await Promise.all(pools.splice(0).map((p) => p.end()));
  });

  it('lifetimes: retires a connection after maxUses checkouts', async () => {
    const { pool } = track(makePool({ max: 1, maxUses: 2 }));
    const used = [];
    for (let i = 0; i < 5; i++) used.push(await clientOf(pool.query('SELECT 1')));
    expect(used[0]).toBe(used[1]);
    expect(used[2]).not.toBe(used[1]);
    expect(used[2]).toBe(used[3]);
    expect(used[4]).not.toBe(used[3]);
    expect(pool.state()).toMatchObject({ total: 1, idle: 1 });
  });

  it('lifetimes: retires a connection past maxLifetimeMs (±2.5%) when it comes back, and closes idle ones above min after idleTimeoutMs', async () => {
    const { pool } = track(makePool({ max: 2, min: 0, maxLifetimeMs: 100, idleTimeoutMs: 0 }));
    const first = await clientOf(pool.query('SELECT 1'));
    await sleep(130);
    expect(await clientOf(pool.query('SELECT 1'))).not.toBe(first);
    const idle = track(makePool({ max: 3, min: 1, idleTimeoutMs: 100 })).pool;
    const held = await Promise.all([idle.acquire(), idle.acquire(), idle.acquire()]);
    for (const c of held) c.release();
    expect(idle.state()).toMatchObject({ total: 3, idle: 3 });
    const deadline = Date.now() + 2000;
    while (idle.state().total > 1 && Date.now() < deadline) await sleep(20);
    expect(idle.state()).toMatchObject({ total: 1, idle: 1 });
  });

  it('leak detection: a client held past the threshold is counted, warned about once with the stack that acquired it, emitted, and its return is logged', async () => {
    const { pool, events, warnings } = track(makePool({ max: 1 }, {}, { leakDetectionThresholdMs: 50 }));
    const quick = await pool.acquire();
    quick.release();
    const held = await pool.acquire();
    await sleep(150);
    const leaks = warnings.filter((w) => w.startsWith('Possible connection leak on "default/primary": a client has been held for more than'));
    expect(leaks).toHaveLength(1);
    expect(leaks[0]).toContain('Acquired at:');
    expect(leaks[0]).toContain('node-pool.spec');
    expect(events.filter((e) => e.type === 'leak')).toHaveLength(1);
    expect(pool.counters.leaks).toBe(1);
    held.release();
    expect(warnings.filter((w) => /^Previously reported leaked client of "default\/primary" was returned after \d+ms\.$/.test(w))).toHaveLength(1);
    expect(warnings.join('\n')).not.toContain('node-pool-spec');
  });

  it("leak detection leaves the pool's own statements alone: one held past the threshold (until its deadline) is no leak", async () => {
    const { pool, events, warnings } = track(makePool({ max: 1, statementTimeoutMs: 0, queryTimeoutMs: 200 }, {}, { leakDetectionThresholdMs: 50 }));
    await pool.query('SELECT 1');
    FakeClient.silent = true;
    await expect(pool.query('SELECT pg_sleep(10)')).rejects.toBeInstanceOf(PoolStatementTimeoutError);
    FakeClient.silent = false;
    expect(pool.counters.leaks).toBe(0);
    expect(events.filter((e) => e.type === 'leak')).toEqual([]);
    expect(warnings.filter((w) => w.startsWith('Possible connection leak'))).toEqual([]);
    const held = await pool.pool.connect();
    await sleep(150);
    expect(pool.counters.leaks).toBe(1);
    held.release();
  });

  it("pg.Pool's connect(): one object per physical connection; a stale release() throws and never gives back a later checkout", async () => {
    const { pool } = track(makePool({ max: 1 }));
    const face = pool.pool;
    const first = await face.connect();
    const staleRelease = first.release;
    first.release();
    const second = await face.connect();
    expect(second).toBe(first);
    expect(() => staleRelease()).toThrow('Release called on client which has already been released to the pool.');
    expect(pool.state()).toMatchObject({ inUse: 1, idle: 0 });
    expect(checkoutOf(second)?.returned).toBe(false);
    expect((await second.query('SELECT 1')).rows).toHaveLength(1);
    second.release();
    expect(checkoutOf(second)?.returned).toBe(true);
    await expect(second.query('SELECT 1')).rejects.toBeInstanceOf(ClientReleasedError);
    expect(() => second.release()).toThrow('Release called on client which has already been released to the pool.');
    expect(pool.state()).toMatchObject({ inUse: 0, idle: 1 });
  });

  it('reuses the most recently released connection and opens no more than max', async () => {
    const { pool } = track(makePool({ max: 2 }));
    const first = await clientOf(pool.query('SELECT 1'));
    expect(await clientOf(pool.query('SELECT 1'))).toBe(first);
    const results = await Promise.all([1, 2, 3, 4].map(() => clientOf(pool.query('SELECT 1'))));
    expect(new Set(results).size).toBe(2);
    expect(pool.state()).toMatchObject({ total: 2, idle: 2, inUse: 0, waiting: 0 });
  });

  it('serves waiters in FIFO order and fails the ones past acquireTimeoutMs with the pool state', async () => {
    const { pool } = track(makePool({ max: 1, acquireTimeoutMs: 50 }));
    const held = await pool.acquire();
    const order: string[] = [];
    const a = pool.acquire().then((c) => {
      order.push('a');
      return c;
    });
    const b = pool.acquire().then((c) => {
      order.push('b');
      pool.release(c);
    });
    expect(pool.waiting).toBe(2);
    pool.release(held);
    pool.release(await a);
    await b;
    expect(order).toEqual(['a', 'b']);
    const holder = await pool.acquire();
    const err = await pool.acquire().then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(PoolAcquireTimeoutError);
    expect((err as Error).message).toMatch(/within \d+ms \(total=1 idle=0 in-use=1 waiting=0 max=1\)/);
    pool.release(holder);
  });

  it('a lent handle: release twice throws as in pg-pool, any later call throws, and the next borrower keeps its checkout', async () => {
    const { pool } = track(makePool({ max: 1 }));
    const first = await pool.acquire();
    first.release();
    expect(() => first.release()).toThrow('Release called on client which has already been released to the pool.');
    const second = await pool.acquire();
    pool.release(first);
    expect(pool.state()).toMatchObject({ inUse: 1, idle: 0 });
    await expect(first.query('SELECT 1')).rejects.toBeInstanceOf(ClientReleasedError);
    expect(() => (first as unknown as EventEmitter).on('x', () => undefined)).toThrow(ClientReleasedError);
    expect((await second.query('SELECT 1')).rows).toHaveLength(1);
    pool.release(second);
    expect(pool.state()).toMatchObject({ inUse: 0, idle: 1 });
  });

  it('keeps a connection after an error the caller threw, destroys it after one it raised', async () => {
    const { pool } = track(makePool({ max: 1 }));
    const client = await pool.acquire();
    const id = (await client.query('SELECT 1')).rows[0].client;
    pool.release(client, Object.assign(new Error('upstream reset'), { code: 'ECONNRESET' }));
    const again = await pool.acquire();
    expect((await again.query('SELECT 1')).rows[0].client).toBe(id);
    FakeClient.instances.find((c) => c.id === id)!.end();
    const failure = await again.query('SELECT 1').then(() => undefined, (e: unknown) => e);
    pool.release(again, failure);
    expect(await clientOf(pool.query('SELECT 1'))).not.toBe(id);
  });

  it('rolls back a transaction left open before the connection is lent again', async () => {
    const { pool } = track(makePool({ max: 1 }));
    const client = await pool.begin('BEGIN');
    expect(client.getTransactionStatus?.()).toBe('T');
    pool.release(client);
    await sleep(5);
    expect(pool.counters.rollbacksOnRelease).toBe(1);
    const next = await pool.acquire();
    expect(next.getTransactionStatus?.()).toBe('I');
    pool.release(next);
  });

  it('resets a session a borrower changed before lending it again; a reset that fails retires the connection', async () => {
    const { pool, events } = track(makePool({ max: 1 }));
    const id = await clientOf(pool.query('SELECT 1'));
    await pool.query("SELECT set_config('app.tenant_id', 'a', false)");
    await sleep(5);
    expect(pool.counters.sessionResets).toBe(1);
    expect(await clientOf(pool.query('SELECT 1'))).toBe(id);
    FakeClient.failOn = /RESET ALL/;
    const client = await pool.acquire();
    await client.query('SET search_path = other');
    client.release();
    await sleep(5);
    FakeClient.failOn = undefined;
    expect(pool.counters.sessionResets).toBe(1);
    expect(events.some((e) => e.type === 'remove' && e.reason === 'reset-failed')).toBe(true);
    expect(await clientOf(pool.query('SELECT 1'))).not.toBe(id);
  });

  it("resetOnRelease: 'always' resets after every checkout, 'never' and PgBouncer's 'auto' never do", async () => {
    const always = track(makePool({ max: 1, resetOnRelease: 'always' })).pool;
    await always.query('SELECT 1');
    await sleep(5);
    expect(always.counters.sessionResets).toBe(1);
    for (const options of [{ resetOnRelease: 'never' as const }, { pgbouncer: true }]) {
      const pool = track(makePool({ max: 1, ...options })).pool;
      await pool.query('SET search_path = other');
      await sleep(5);
      expect(pool.counters.sessionResets).toBe(0);
    }
  });

  it('a statement with no answer past queryTimeoutMs fails with PoolStatementTimeoutError and its connection is destroyed', async () => {
    const { pool } = track(makePool({ max: 1, statementTimeoutMs: 0, queryTimeoutMs: 80 }));
    const id = await clientOf(pool.query('SELECT 1'));
    FakeClient.silent = true;
    const started = performance.now();
    const err = await pool.query('SELECT pg_sleep(10)').then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(PoolStatementTimeoutError);
    expect(performance.now() - started).toBeLessThan(1000);
    expect(pool.counters.statementTimeouts).toBe(1);
    FakeClient.silent = false;
    expect(await clientOf(pool.query('SELECT 1'))).not.toBe(id);
  });

  it('systemQuery is bounded by its own deadline and destroys the connection on timeout, with no acquire events', async () => {
    const { pool, events } = track(makePool({ max: 1 }));
    expect((await pool.systemQuery('SELECT 1', undefined, 100)).rows).toHaveLength(1);
    expect(events.filter((e) => e.type === 'acquire')).toHaveLength(0);
    FakeClient.silent = true;
    const err = await pool.systemQuery('SELECT 1', undefined, 60).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(PoolStatementTimeoutError);
    expect(pool.counters.systemQueries).toBe(2);
    expect(pool.state().total).toBe(0);
  });

  it('abort() fails statements in flight and waiting callers at once', async () => {
    const { pool } = track(makePool({ max: 1, acquireTimeoutMs: 5000 }));
    await pool.query('SELECT 1');
    FakeClient.silent = true;
    const inFlight = pool.query('SELECT 1').then(() => undefined, (e: unknown) => e);
    const waiting = pool.query('SELECT 1').then(() => undefined, (e: unknown) => e);
    await sleep(5);
    const hung = Object.assign(new Error('hung'), { connectionError: true });
    pool.abort(hung);
    expect(await waiting).toBe(hung);
    expect(await inFlight).toBe(hung);
  });

  it('is pg.Pool-compatible: query with a callback, connect/release, counts and events', async () => {
    const { pool } = track(makePool({ max: 2 }));
    const face = pool.pool;
    const seen: string[] = [];
    for (const name of ['connect', 'acquire', 'release', 'remove'] as const) face.on(name as 'connect', () => seen.push(name));
    const res = await new Promise<QueryResult>((resolve, reject) => face.query('SELECT 1', (err, r) => (err ? reject(err) : resolve(r))));
    expect(res.rows).toHaveLength(1);
    const client: PoolClient = await face.connect();
    expect(face.totalCount).toBe(1);
    expect(face.idleCount).toBe(0);
    expect(face.waitingCount).toBe(0);
    client.release(true);
    await face.end();
    expect(seen).toEqual(['connect', 'acquire', 'release', 'acquire', 'release', 'remove']);
    expect(face.totalCount).toBe(0);
  });

  it('refill: a failed round counts once towards the breaker; while open only the trial connects, once per resetTimeoutMs', async () => {
    // The host's breaker: failureThreshold 5, resetTimeoutMs 1000.
    const { pool, events } = track(makePool({ min: 2, max: 4 }));
    await pool.warmUp();
    FakeClient.refuse = true;
    FakeClient.refused = 0;
    pool.evictAll();
    const deadline = Date.now() + 2000;
    while (pool.status().breaker !== 'open' && Date.now() < deadline) await sleep(5);
    expect(events.filter((e) => e.type === 'breaker-open')).toMatchObject([{ failures: 5 }]);
    // Five rounds of two connects each opened it (not five connects).
    expect(FakeClient.refused).toBe(10);
    const before = FakeClient.refused;
    await sleep(1300);
    // One trial at about 1000 ms: nothing of the 50-500 ms backoff loop.
    expect(FakeClient.refused - before).toBeGreaterThanOrEqual(1);
    expect(FakeClient.refused - before).toBeLessThanOrEqual(2);
    FakeClient.refuse = false;
    const back = Date.now() + 2000;
    while (pool.state().total < 2 && Date.now() < back) await sleep(5);
    expect(pool.status().breaker).toBe('closed');
    expect(pool.state().total).toBe(2);
  }, 10_000);

  it('refill: paused (a banned node) opens nothing until resumed, then refills to min', async () => {
    const { pool } = track(makePool({ min: 2, max: 4 }));
    await pool.warmUp();
    const opened = FakeClient.opened;
    pool.pauseRefill();
    pool.evictAll();
    await sleep(200);
    expect(FakeClient.opened).toBe(opened);
    expect(pool.state().total).toBe(0);
    pool.resumeRefill();
    const deadline = Date.now() + 2000;
    while (pool.state().total < 2 && Date.now() < deadline) await sleep(5);
    expect(pool.state().total).toBe(2);
  });

  it('warm-up: ending the pool during its backoff stops it at once, and nothing connects afterwards', async () => {
    const { pool } = track(makePool({ min: 2, max: 4 }, { retryAttempts: 5, retryDelayMs: 10_000 }));
    FakeClient.refuse = true;
    FakeClient.refused = 0;
    const warming = pool.warmUp().then(() => undefined, (e: unknown) => e);
    while (FakeClient.refused === 0) await sleep(1);
    const t0 = Date.now();
    await pool.end();
    expect(await warming).toMatchObject({ name: 'PoolConnectionError' });
    expect(Date.now() - t0).toBeLessThan(500);
    const refused = FakeClient.refused;
    await sleep(300);
    expect(FakeClient.refused).toBe(refused);
    expect(pool.resting).toBe(false);
  });

  it('an open breaker still serves an idle connection (and closes, the node having answered)', async () => {
    const { pool } = track(makePool({ min: 0, max: 2 }));
    await pool.query('SELECT 1');
    const held = await pool.acquire();
    FakeClient.refuse = true;
    for (let i = 0; i < 5; i++) await pool.query('SELECT 1').catch(() => undefined);
    expect(pool.status().breaker).toBe('open');
    held.release();
    const refused = FakeClient.refused;
    await expect(pool.query('SELECT 1')).resolves.toMatchObject({ command: 'SELECT' });
    expect(FakeClient.refused).toBe(refused);
    // The node answered on that connection: the breaker closed.
    expect(pool.status().breaker).toBe('closed');
  });

  it('a full server (53300): no breaker, callers wait for open connections, PoolServerFullError only with none open', async () => {
    const { pool, events, warnings } = track(makePool({ min: 0, max: 3 }));
    await pool.query('SELECT 1');
    FakeClient.full = true;
    const burst = await Promise.allSettled(Array.from({ length: 10 }, () => pool.query('SELECT 1')));
    expect(burst.filter((r) => r.status === 'rejected')).toEqual([]);
    expect(pool.status().breaker).toBe('closed');
    expect(pool.counters.serverFull).toBeGreaterThan(0);
    expect(events.filter((e) => e.type === 'error' && e.kind === 'server-full').length).toBe(pool.counters.serverFull);
    expect(warnings.filter((w) => w.includes('no connection slot left'))).toHaveLength(1);

    const { pool: empty } = track(makePool({ min: 0, max: 3 }));
    await expect(empty.query('SELECT 1')).rejects.toMatchObject({ name: 'PoolServerFullError', code: 'POOL_SERVER_FULL', serverMessage: 'sorry, too many clients already' });
    FakeClient.full = false;
    await sleep(600);
    await expect(empty.query('SELECT 1')).resolves.toMatchObject({ command: 'SELECT' });
  });

  it('resting: while paused (banned) or while the breaker is open before its trial', async () => {
    const { pool } = track(makePool({ min: 0, max: 2 }));
    expect(pool.resting).toBe(false);
    pool.pauseRefill();
    expect(pool.resting).toBe(true);
    pool.resumeRefill();
    expect(pool.resting).toBe(false);
    FakeClient.refuse = true;
    for (let i = 0; i < 5; i++) await pool.query('SELECT 1').catch(() => undefined);
    expect(pool.status().breaker).toBe('open');
    expect(pool.resting).toBe(true);
  });

  it("a checkout judges where an error came from: the connection's own, or the caller's", async () => {
    const { pool } = track(makePool({ max: 1 }));
    const client = await pool.acquire();
    const checkout = checkoutOf(client)!;
    const thrown = Object.assign(new Error('fetch failed'), { code: 'ECONNRESET' });
    expect(ownError(client, thrown)).toBeUndefined();
    const sqlError = new Error('a rule of the caller');
    expect(ownError(client, sqlError)).toBe(sqlError);
    FakeClient.failOn = /^SELECT 2/;
    const produced = await client.query('SELECT 2').then(() => undefined, (e: unknown) => e);
    expect(checkout.raised(produced)).toBe(true);
    expect(checkout.failed).toBe(false);
    FakeClient.instances.at(-1)!.end();
    expect(checkout.failed).toBe(true);
    expect(checkout.releaseError(undefined)).toBeInstanceOf(Error);
    pool.release(client, checkout.releaseError(undefined));
    expect(pool.state()).toMatchObject({ total: 0 });
  });

  it("pg-pool's release(err) rule through a holder (db.routedPool's client) closes the connection, as the handle's own release(err)", async () => {
    const { pool } = track(makePool({ max: 1 }));
    const client = await pool.acquire();
    const id = (await client.query('SELECT 1')).rows[0].client;
    releasedWith(client, false);
    pool.release(client);
    const again = await pool.acquire();
    expect((await again.query('SELECT 1')).rows[0].client).toBe(id);
    releasedWith(again, true);
    pool.release(again);
    expect(await clientOf(pool.query('SELECT 1'))).not.toBe(id);
  });

  it("a gated handle (a transaction's): the gate refuses statements first, hears their errors, and release() is left to its owner", async () => {
    const { pool } = track(makePool({ max: 1 }));
    const client = await pool.acquire();
    const heard: unknown[] = [];
    const state: { refusal: Error | undefined } = { refusal: undefined };
    setGate(client, { refusal: () => state.refusal, produced: (err) => heard.push(err) });
    FakeClient.failOn = /^SELECT 2/;
    await expect(client.query('SELECT 2')).rejects.toMatchObject({ code: '42501' });
    expect(heard).toHaveLength(1);
    client.release();
    client.release();
    expect(pool.state()).toMatchObject({ inUse: 1 });
    const ended = new Error('the transaction ended');
    state.refusal = ended;
    await expect(client.query('SELECT 1')).rejects.toBe(ended);
    pool.release(client);
    await expect(client.query('SELECT 1')).rejects.toBe(ended);
    expect(pool.state()).toMatchObject({ inUse: 0, idle: 1 });
  });
});
