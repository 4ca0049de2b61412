import { jest } from '@jest/globals';
import type { INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import type pg from 'pg';
import { DatabaseService, getPoolToken, PoolModule, type PoolModuleRootOptions } from 'nestjs-pg-pools';
import { nodeOf, routingOptions } from './support/routing.support.js';
import { sessionCounts, waitForNoSessions } from './support/sessions.js';
import { sleep } from './support/wait.js';

// The pools the module lends, used as a pg.Pool user uses one, on the real cluster: an argument pg
// rejects before sending (leaks nothing, settles, no unhandled rejection), end() with checked-out
// and still-connecting callers (they finish, as pg-pool lets them), a client ended then released
// (never pooled again), one handle object per physical connection across checkouts.

jest.setTimeout(30_000);

const APP = 'e2e-pool-dropin';

function options(app: string, extra: Partial<PoolModuleRootOptions> = {}): PoolModuleRootOptions {
  return { ...routingOptions(app, { min: 0, max: 2, lazy: true, ...extra }), replicas: [nodeOf('replica1')] };
}

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
    expect(await sessionCounts(`${APP}-sync`)).toEqual({ primary: 0, replica1: 0, replica2: 0 });
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
    expect(pool.totalCount - pool.idleCount).toBe(0);
  });

  it('on a client from connect(): throws as pg does, and the client stays usable and releasable', async () => {
    const client = await pool.connect();
    expect(() => (client.query as (t: unknown) => unknown)(null)).toThrow(TypeError);
    expect((await client.query<{ n: number }>('SELECT 2 AS n')).rows).toEqual([{ n: 2 }]);
    client.release();
    expect(pool.totalCount - pool.idleCount).toBe(0);
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
    expect(await sessionCounts(`${APP}-handles`)).toEqual({ primary: 0, replica1: 0, replica2: 0 });
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
