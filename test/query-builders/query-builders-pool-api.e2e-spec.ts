import { jest } from '@jest/globals';
import { Injectable, Module, type INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import pg from 'pg';
import { DatabaseService, PoolError, PoolModule, ReadOnly } from 'nestjs-pg-pools';
import { routingOptions, serverAt, WHERE_SQL } from '../support/routing.support.js';
import { adminQuery, type PgNodeName } from '../support/cluster.js';
import { expectNoSessionsLeft } from '../support/sessions.js';
import { waitFor } from '../support/wait.js';

// db.routedPool as a pg.Pool, on the real cluster: the call forms query builders use (promise and
// callback, QueryConfig with rowMode 'array', connect() in both forms, submittables on a client),
// its counts and events, a harmless end(), and a released client that stays dead.

const APP = 'e2e-query-builders-pool-api';

jest.setTimeout(30_000);

type Row = { port: number; recovery: boolean };

@Injectable()
class Scoped {
  constructor(readonly db: DatabaseService) {}

  @ReadOnly()
  run<T>(fn: (pool: pg.Pool) => Promise<T>): Promise<T> {
    return fn(this.db.routedPool);
  }
}

@Module({ imports: [PoolModule.forRoot(routingOptions(APP, { min: 1, max: 3, routing: { lagCheckIntervalMs: 60_000 } }))], providers: [Scoped] })
class PoolApiModule {}

let app: INestApplication;
let db: DatabaseService;
let scoped: Scoped;

beforeAll(async () => {
  const moduleRef = await Test.createTestingModule({ imports: [PoolApiModule] }).compile();
  app = moduleRef.createNestApplication({ logger: false });
  await app.init();
  db = app.get(DatabaseService);
  scoped = app.get(Scoped);
});

afterAll(async () => {
  await app?.close();
  await expectNoSessionsLeft(APP);
});

const node = (rows: Row[]): PgNodeName => serverAt(rows[0]!.port);

describe('db.routedPool as a pg.Pool', () => {
  it('is a pg.Pool (Drizzle and Prisma check instanceof), one per database', () => {
    expect(db.routedPool).toBeInstanceOf(pg.Pool);
    expect(db.routedPool).toBe(db.routedPool);
  });

  it('query: promise and callback forms, with and without values, and a QueryConfig with rowMode "array"', async () => {
    const pool = db.routedPool;
    expect(node((await pool.query<Row>(WHERE_SQL)).rows)).toBe('primary');
    expect((await pool.query<{ n: number }>('SELECT $1::int AS n', [7])).rows).toEqual([{ n: 7 }]);
    const array = await pool.query({ text: 'SELECT $1::int AS a, $2::text AS b', values: [1, 'x'], rowMode: 'array' });
    expect(array.rows).toEqual([[1, 'x']]);
    expect(array.fields.map((f) => f.name)).toEqual(['a', 'b']);
    const viaCallback = await new Promise<pg.QueryResult>((resolve, reject) =>
      pool.query('SELECT $1::int AS n', [8], (err, res) => (err ? reject(err) : resolve(res))),
    );
    expect(viaCallback.rows).toEqual([{ n: 8 }]);
    const noValues = await new Promise<pg.QueryResult>((resolve, reject) => pool.query('SELECT 9 AS n', (err, res) => (err ? reject(err) : resolve(res))));
    expect(noValues.rows).toEqual([{ n: 9 }]);
    const failed = await new Promise<Error>((resolve) => pool.query('SELECT * FROM no_such_table_qb', (err) => resolve(err)));
    expect(failed.message).toMatch(/no_such_table_qb/);
  });

  it('query under @ReadOnly() answers from a replica, in every form', async () => {
    const nodes = await scoped.run(async (pool) => [
      node((await pool.query<Row>(WHERE_SQL)).rows),
      node((await pool.query<Row>({ text: WHERE_SQL })).rows),
      serverAt(((await pool.query({ text: WHERE_SQL, rowMode: 'array' })).rows[0] as unknown[])[0] as number),
    ]);
    expect(nodes.every((n) => n !== 'primary')).toBe(true);
  });

  it('connect(): promise and callback forms; a released client is dead and release() twice throws', async () => {
    const client = await db.routedPool.connect();
    expect(node((await client.query<Row>(WHERE_SQL)).rows)).toBe('primary');
    client.release();
    await expect(client.query('SELECT 1')).rejects.toThrow(PoolError);
    await expect(client.query('SELECT 1')).rejects.toThrow(/already (released|given back)/);
    expect(() => client.release()).toThrow(/already been released/);

    const viaCallback = await new Promise<pg.PoolClient>((resolve, reject) => db.routedPool.connect((err, c) => (err ? reject(err) : resolve(c!))));
    const res = await new Promise<pg.QueryResult>((resolve, reject) => viaCallback.query('SELECT 1 AS one', (err, r) => (err ? reject(err) : resolve(r))));
    expect(res.rows).toEqual([{ one: 1 }]);
    viaCallback.release();
  });

  it('outside any routing scope, connect() lends the primary’s client: a real connection, one object per connection', async () => {
    const first = await db.routedPool.connect();
    const pid = (await first.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    expect(db.primary.pool.totalCount - db.primary.pool.idleCount).toBe(1);
    first.release();
    expect(db.primary.pool.totalCount - db.primary.pool.idleCount).toBe(0);
    const clients = [];
    for (let i = 0; i < 3; i++) clients.push(await db.routedPool.connect());
    const again = clients.find((c) => c === first);
    expect(again).toBeDefined();
    expect((await again!.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid).toBe(pid);
    for (const c of clients) c.release();
  });

  it('a client holds one connection from BEGIN (or a session command) to release(), and gives it back', async () => {
    const client = await db.routedPool.connect();
    try {
      await client.query('SET application_name = DEFAULT');
      const pids = new Set<number>();
      for (let i = 0; i < 4; i++) pids.add((await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid);
      expect(pids.size).toBe(1);
      expect(db.routedPool.totalCount - db.routedPool.idleCount).toBe(1);
      await client.query('RESET application_name');
    } finally {
      client.release();
    }
    // The session commands marked the checkout: it is back once its session reset answered.
    await waitFor('the held connection back in the pool', () => db.routedPool.totalCount - db.routedPool.idleCount === 0, 2000);
    expect(db.routedPool.totalCount - db.routedPool.idleCount).toBe(0);
  });

  it('a submittable (pg.Query) runs on a held client; under @ReadOnly() on a replica', async () => {
    const rows = await scoped.run(async (pool) => {
      const client = await pool.connect();
      try {
        const query = client.query(new pg.Query(WHERE_SQL));
        return await new Promise<Row[]>((resolve, reject) => {
          const got: Row[] = [];
          query.on('row', (row: Row) => got.push(row));
          query.on('end', () => resolve(got));
          query.on('error', reject);
        });
      } finally {
        client.release();
      }
    });
    expect(rows).toHaveLength(1);
    expect(rows[0]!.recovery).toBe(true);
    await expect(db.routedPool.query(new pg.Query('SELECT 1') as never)).rejects.toThrow(/cursor or stream .* db.routedPool.connect\(\)/);
  });

  it('totalCount / idleCount / waitingCount add up every pool of the database', () => {
    const pools = [db.primary.pool, ...db.replica.pools];
    const sum = (key: 'totalCount' | 'idleCount' | 'waitingCount') => pools.reduce((n, p) => n + p[key], 0);
    expect(db.routedPool.totalCount).toBe(sum('totalCount'));
    expect(db.routedPool.idleCount).toBe(sum('idleCount'));
    expect(db.routedPool.waitingCount).toBe(0);
    expect(db.routedPool.totalCount).toBeGreaterThanOrEqual(3);
  });

  it("passes on the pools' events while someone listens: 'error' and 'remove' of a killed idle connection, 'connect', 'acquire', 'release'", async () => {
    const seen: string[] = [];
    const listeners = (['error', 'remove', 'connect', 'acquire', 'release'] as const).map((event) => [event, () => seen.push(event)] as const);
    for (const [event, fn] of listeners) db.routedPool.on(event, fn);
    try {
      (await db.primary.pool.connect()).release();
      expect(seen).toEqual(expect.arrayContaining(['acquire', 'release']));
      const killed = await adminQuery<{ pid: number }>('primary', 'SELECT pg_terminate_backend(pid), pid FROM pg_stat_activity WHERE application_name = $1', [APP]);
      expect(killed.length).toBeGreaterThanOrEqual(1);
      await waitFor("the killed idle connections' error and remove events", () => seen.includes('error') && seen.includes('remove'), 5000, 10);
      seen.length = 0;
      const clients = await Promise.all([db.primary.pool.connect(), db.primary.pool.connect()]);
      for (const c of clients) c.release();
      expect(seen).toContain('connect');
    } finally {
      for (const [event, fn] of listeners) db.routedPool.off(event, fn);
    }
    seen.length = 0;
    (await db.primary.pool.connect()).release();
    expect(seen).toEqual([]);
  });

  it('end() is harmless: the module owns the pools, so queries keep working after it', async () => {
    await db.routedPool.end();
    await new Promise<void>((resolve) => db.routedPool.end(resolve));
    expect((await db.routedPool.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    expect((await db.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
  });
});
