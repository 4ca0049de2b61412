import { jest } from '@jest/globals';
import type { INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import type pg from 'pg';
import { DatabaseService, getPoolToken, PoolModule, type PoolModuleRootOptions } from 'nestjs-pg-pools';
import { nodeOf, routingOptions } from '../support/routing.support.js';
import { waitForNoSessions } from '../support/sessions.js';
import { sleep, waitFor } from '../support/wait.js';

// The pools the module lends, used as a pg.Pool user uses one, on the real cluster: an argument pg
// rejects before sending (leaks nothing, settles, no unhandled rejection), end() with checked-out
// and still-connecting callers (they finish, as pg-pool lets them), a client ended then released
// (never pooled again), one handle object per physical connection across checkouts.

jest.setTimeout(30_000);

const APP = 'e2e-pool-dropin';

// The lag checks run once a minute here: their statements would otherwise hold a primary connection now and then.
function options(app: string, extra: Partial<PoolModuleRootOptions> = {}): PoolModuleRootOptions {
  return { ...routingOptions(app, { min: 0, max: 2, lazy: true, routing: { lagCheckIntervalMs: 60_000 }, ...extra }), replicas: [nodeOf('replica1')] };
}

/** No client of `pool` left checked out (the release of the last one may still be resetting its session). */
const noneCheckedOut = (pool: pg.Pool) => waitFor('every client back in the pool', () => pool.totalCount - pool.idleCount === 0, 2000, 10);

async function start(app: string, extra: Partial<PoolModuleRootOptions> = {}): Promise<{ app: INestApplication; pool: pg.Pool; db: DatabaseService }> {
  const moduleRef = await Test.createTestingModule({ imports: [PoolModule.forRoot(options(app, extra))] }).compile();
  const nest = moduleRef.createNestApplication({ logger: false });
  await nest.init();
  return { app: nest, pool: nest.get<pg.Pool>(getPoolToken()), db: nest.get(DatabaseService) };
}

/** Unhandled rejections seen while `fn` runs (and shortly after). */
async function unhandledDuring(fn: () => Promise<void>): Promise<unknown[]> {
  const seen: unknown[] = [];
  const listener = (reason: unknown) => seen.push(reason);
  process.on('unhandledRejection', listener);
  try {
    await fn();
    await sleep(100);
  } finally {
    process.off('unhandledRejection', listener);
  }
  return seen;
}

/** Settles within `ms` or says it did not. */
function settled<T>(p: Promise<T>, ms = 3000): Promise<{ value?: T; error?: unknown; pending?: true }> {
  return Promise.race([
    p.then(
      (value) => ({ value }),
      (error: unknown) => ({ error }),
    ),
    sleep(ms).then(() => ({ pending: true as const })),
  ]);
}

describe('an argument pg rejects before sending (client.query throws synchronously)', () => {
  let app: INestApplication;
  let pool: pg.Pool;
  let db: DatabaseService;
  beforeAll(async () => ({ app, pool, db } = await start(`${APP}-sync`)));
  afterAll(async () => {
    await app?.close();
    await waitForNoSessions(`${APP}-sync`, { timeoutMs: 5000, everyMs: 50 });
  });

  it.each([
    ['@InjectPool()', () => pool],
    ['db.routedPool', () => db.routedPool],
  ])('%s.query(null) rejects with pg’s TypeError, on a new and on an idle connection, leaking nothing', async (_label, get) => {
    const p = get();
    const unhandled = await unhandledDuring(async () => {
      // max 2: three such calls in a row would exhaust the pool if any leaked its connection.
      for (let i = 0; i < 3; i++) {
        const outcome = await settled((p.query as (t: unknown) => Promise<unknown>)(null));
        expect(outcome.pending).toBeUndefined();
        expect(outcome.error).toBeInstanceOf(TypeError);
        expect(String((outcome.error as Error).message)).toMatch(/null or undefined query/);
      }
      const viaCallback = await new Promise<Error | undefined>((resolve) => (p.query as (t: unknown, cb: (e?: Error) => void) => void)(undefined, (err) => resolve(err)));
      expect(viaCallback).toBeInstanceOf(TypeError);
    });
    expect(unhandled).toEqual([]);
    expect((await p.query<{ n: number }>('SELECT 1 AS n')).rows).toEqual([{ n: 1 }]);
    await noneCheckedOut(pool);
  });

  it('on a client from connect(): throws as pg does, and the client stays usable and releasable', async () => {
    const client = await pool.connect();
    expect(() => (client.query as (t: unknown) => unknown)(null)).toThrow(TypeError);
    expect((await client.query<{ n: number }>('SELECT 2 AS n')).rows).toEqual([{ n: 2 }]);
    client.release();
    await noneCheckedOut(pool);
  });
});

describe('end() as pg-pool ends', () => {
  it('lets a checked-out client finish, resolves once it is released, and a second end() rejects', async () => {
    const name = `${APP}-end-out`;
    const { app, pool } = await start(name);
    try {
      const client = await pool.connect();
      const ending = pool.end();
      expect(pool.ending).toBe(true);
      expect((await client.query<{ n: number }>('SELECT pg_sleep(0.05), 3 AS n')).rows[0]!.n).toBe(3);
      expect((await settled(ending, 200)).pending).toBe(true);
      client.release();
      expect((await settled(ending)).error).toBeUndefined();
      await expect(pool.end()).rejects.toThrow(/more than once/);
      await expect(pool.query('SELECT 1')).rejects.toThrow(/ended|closed/i);
      // The primary's pool ended (the replica's lives until the app closes).
      await waitForNoSessions(name, { nodes: ['primary'], timeoutMs: 5000, everyMs: 50 });
    } finally {
      await app.close();
    }
  });

  it('queries whose connection is still opening complete', async () => {
    const name = `${APP}-end-opening`;
    const { app, pool } = await start(name, { max: 4 });
    try {
      expect(pool.totalCount).toBe(0);
      const queries = Array.from({ length: 4 }, (_, i) => pool.query<{ n: number }>('SELECT $1::int AS n', [i]));
      await pool.end();
      const outcomes = await Promise.all(queries.map((q) => settled(q)));
      expect(outcomes.map((o) => o.value?.rows[0]?.n)).toEqual([0, 1, 2, 3]);
      // The primary's pool ended (the replica's lives until the app closes).
      await waitForNoSessions(name, { nodes: ['primary'], timeoutMs: 5000, everyMs: 50 });
    } finally {
      await app.close();
    }
  });

  it('end() with a callback: called once every client is back; a second call gets the error', async () => {
    const name = `${APP}-end-cb`;
    const { app, pool } = await start(name);
    try {
      const client = await pool.connect();
      const end = pool.end.bind(pool) as unknown as (cb: (err?: Error) => void) => void;
      const first = new Promise<Error | undefined>((resolve) => end((err) => resolve(err)));
      const second = new Promise<Error | undefined>((resolve) => end((err) => resolve(err)));
      expect(String(await second)).toMatch(/more than once/);
      client.release();
      expect(await first).toBeUndefined();
    } finally {
      await app.close();
    }
  });

  it('the module’s own shutdown still ends a pool whose user end() waits on a leaked client', async () => {
    const name = `${APP}-end-leak`;
    const { app, pool } = await start(name, { shutdownTimeoutMs: 200 });
    await pool.connect();
    void pool.end();
    expect((await settled(app.close(), 5000)).pending).toBeUndefined();
    await waitForNoSessions(name, { timeoutMs: 5000, everyMs: 50 });
  });
});

describe('clients and handles', () => {
  let app: INestApplication;
  let pool: pg.Pool;
  beforeAll(async () => ({ app, pool } = await start(`${APP}-handles`, { max: 1 })));
  afterAll(async () => {
    await app?.close();
    await waitForNoSessions(`${APP}-handles`, { timeoutMs: 5000, everyMs: 50 });
  });

  it('a client end()ed and then released never goes back to the idle pool', async () => {
    const client = await pool.connect();
    const pid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    const ended = client.end();
    client.release();
    expect(pool.idleCount).toBe(0);
    expect(pool.totalCount).toBe(0);
    await ended;
    const next = await pool.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    expect(next.rows[0]!.pid).not.toBe(pid);
  });

  it('the same physical connection is lent as the same client object, whose calls work only while checked out', async () => {
    const first = await pool.connect();
    const pid = (await first.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    first.release();
    await expect(first.query('SELECT 1')).rejects.toThrow(/released/);
    const second = await pool.connect();
    try {
      expect((await second.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid).toBe(pid);
      expect(second).toBe(first);
      expect(() => second.release()).not.toThrow();
    } finally {
      // released above
    }
    expect(() => second.release()).toThrow(/already been released/);
  });

  it('events carry the client connect() hands out', async () => {
    const acquired: unknown[] = [];
    const released: unknown[] = [];
    const onAcquire = (c: unknown) => acquired.push(c);
    const onRelease = (_e: unknown, c: unknown) => released.push(c);
    pool.on('acquire', onAcquire);
    pool.on('release', onRelease);
    try {
      const client = await pool.connect();
      client.release();
      expect(acquired).toEqual([client]);
      expect(released).toEqual([client]);
    } finally {
      pool.off('acquire', onAcquire);
      pool.off('release', onRelease);
    }
  });
});

describe('pg-pool option names on a node: honoured, or refused naming the module’s own', () => {
  const running: INestApplication[] = [];
  afterAll(async () => {
    for (const app of running) await app.close();
  });
  async function withPrimary(app: string, node: Record<string, unknown>): Promise<pg.Pool> {
    const started = await start(app, { primary: { ...nodeOf('primary'), ...node } as never, max: undefined, min: undefined });
    running.push(started.app);
    return started.pool;
  }
  const pid = async (pool: pg.Pool) => (await pool.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;

  it('max, min and idleTimeoutMillis: an idle connection above min closes after idleTimeoutMillis', async () => {
    const pool = await withPrimary(`${APP}-opt-idle`, { max: 2, min: 0, idleTimeoutMillis: 200 });
    // (The lag checks' statements, every 60 s here, would otherwise keep one connection busy.)
    const [a, b] = [await pool.connect(), await pool.connect()];
    expect(pool.totalCount).toBe(2);
    a.release();
    b.release();
    expect(pool.options.idleTimeoutMillis).toBe(200);
    await waitFor('idle connections to close', () => pool.totalCount === 0, 3000, 20);
  });

  it('connectionTimeoutMillis bounds the wait for a client, with pg-pool’s wording', async () => {
    const pool = await withPrimary(`${APP}-opt-ct`, { max: 1, min: 0, connectionTimeoutMillis: 300 });
    const held = await pool.connect();
    const t0 = Date.now();
    const err = await pool.query('SELECT 1').then(() => undefined, (e: Error) => e);
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(err?.message).toMatch(/timeout exceeded when trying to connect/);
    held.release();
  });

  it('maxUses retires a connection after that many checkouts', async () => {
    const pool = await withPrimary(`${APP}-opt-uses`, { max: 1, min: 0, maxUses: 2 });
    const first = await pid(pool);
    expect(await pid(pool)).toBe(first);
    expect(await pid(pool)).not.toBe(first);
  });

  it('maxLifetimeSeconds retires a connection; one expired while checked out counts in expiredCount', async () => {
    const pool = await withPrimary(`${APP}-opt-life`, { max: 1, min: 0, maxLifetimeSeconds: 1 });
    const client = await pool.connect();
    const first = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    await waitFor('the checked-out connection to expire', () => pool.expiredCount === 1, 3000, 20);
    client.release();
    expect(pool.totalCount).toBe(0);
    expect(await pid(pool)).not.toBe(first);
  });

  it('a node’s own onConnect runs once per new connection, on the client connect() hands out', async () => {
    const seen: unknown[] = [];
    const pool = await withPrimary(`${APP}-opt-hook`, {
      max: 1,
      min: 0,
      onConnect: async (client: pg.PoolClient) => {
        seen.push(client);
        await client.query('SET application_name = DEFAULT');
      },
    });
    const client = await pool.connect();
    client.release();
    const again = await pool.connect();
    again.release();
    expect(seen).toEqual([client]);
    expect(again).toBe(client);
  });

  it('poolSize (pg-pool’s old name for max), log and verify are honoured', async () => {
    const messages: string[] = [];
    const verified: unknown[] = [];
    const pool = await withPrimary(`${APP}-opt-hooks`, {
      poolSize: 1,
      min: 0,
      maxUses: 1,
      log: (message: string) => messages.push(message),
      verify: (client: pg.PoolClient, cb: (err?: Error) => void) => {
        verified.push(client);
        cb();
      },
    });
    expect(pool.options.max).toBe(1);
    const client = await pool.connect();
    expect(verified).toEqual([client]);
    client.release();
    expect(messages).toEqual(expect.arrayContaining(['connecting new client', 'new client connected', 'remove expended client']));
    const refused = await withPrimary(`${APP}-opt-verify`, { min: 0, verify: (_client: unknown, cb: (err?: Error) => void) => cb(new Error('nope')) });
    await expect(refused.connect()).rejects.toThrow('nope');
    expect(refused.totalCount).toBe(0);
  });

  it.each([
    ['Promise', Promise, /native promises/],
    ['log', 'verbose', /a function/],
    ['verify', true, /a function/],
  ])('%s: %p is refused with one error naming what to use', async (key, value, hint) => {
    const err = await start(`${APP}-opt-refused`, { primary: { ...nodeOf('primary'), [key]: value } as never }).then(
      (s) => (running.push(s.app), undefined),
      (e: Error) => e,
    );
    expect(err?.message).toMatch(new RegExp(`option \`primary\\.${key}\``));
    expect(err?.message).toMatch(hint);
  });

  it('connectionTimeoutMillis: 0 (pg-pool’s "wait forever") is refused; pg-pool and module names that disagree are refused', async () => {
    for (const node of [{ connectionTimeoutMillis: 0 }, { idleTimeoutMillis: 100, idleTimeoutMs: 200 }]) {
      const err = await start(`${APP}-opt-refused`, { primary: { ...nodeOf('primary'), ...node } as never }).then(
        (s) => (running.push(s.app), undefined),
        (e: Error) => e,
      );
      expect(err?.message).toMatch(/^Invalid option `primary\.(connectionTimeoutMillis|idleTimeoutMillis)`/);
    }
  });
});

describe('callbacks', () => {
  let app: INestApplication;
  let pool: pg.Pool;
  let db: DatabaseService;
  beforeAll(async () => ({ app, pool, db } = await start(`${APP}-callbacks`)));
  afterAll(async () => app?.close());

  it.each([
    ['@InjectPool()', () => pool],
    ['db.routedPool', () => db.routedPool],
  ])('%s.query(fn) calls fn back with an error instead of ignoring it', async (_label, get) => {
    const err = await new Promise<Error>((resolve) => (get().query as unknown as (fn: (e: Error) => void) => void)((e) => resolve(e)));
    expect(err.message).toMatch(/Passing a function as the first parameter to pool.query is not supported/);
  });

  /** Runs `fire` with uncaught exceptions captured (Jest's own handling set aside meanwhile); resolves with what reached the process. */
  async function thrownFrom(fire: (boom: Error) => void): Promise<{ uncaught: unknown[]; unhandled: unknown[] }> {
    const boom = new Error('thrown by the callback');
    const uncaught: unknown[] = [];
    const unhandled: unknown[] = [];
    const onUnhandled = (err: unknown) => unhandled.push(err);
    process.setUncaughtExceptionCaptureCallback((err) => uncaught.push(err));
    process.on('unhandledRejection', onUnhandled);
    try {
      fire(boom);
      await waitFor('the callback to throw', () => uncaught.length + unhandled.length > 0, 3000, 10);
      await sleep(50);
    } finally {
      process.setUncaughtExceptionCaptureCallback(null);
      process.off('unhandledRejection', onUnhandled);
    }
    expect([...uncaught, ...unhandled].every((e) => e === boom)).toBe(true);
    return { uncaught, unhandled };
  }

  it.each([
    ['@InjectPool().query', () => pool],
    ['db.routedPool.query', () => db.routedPool],
  ])('%s: a callback that throws is an uncaught exception (as with pg.Pool), called once, not an unhandled rejection', async (_label, get) => {
    let calls = 0;
    const seen = await thrownFrom((boom) =>
      get().query('SELECT 1', () => {
        calls++;
        throw boom;
      }),
    );
    expect(seen.unhandled).toEqual([]);
    expect(seen.uncaught).toHaveLength(1);
    expect(calls).toBe(1);
    await noneCheckedOut(pool);
  });

  it('connect(callback) and end-style callbacks that throw are uncaught exceptions too', async () => {
    const seen = await thrownFrom((boom) =>
      pool.connect((err, client, done) => {
        done();
        throw boom;
      }),
    );
    expect(seen.unhandled).toEqual([]);
    expect(seen.uncaught).toHaveLength(1);
  });
});
