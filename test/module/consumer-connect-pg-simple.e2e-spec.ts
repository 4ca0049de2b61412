import { jest } from '@jest/globals';
import { Injectable, Module, type INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { createRequire } from 'node:module';
import session from 'express-session';
import type pg from 'pg';
import { DatabaseService, InjectPool, PoolModule } from 'nestjs-pg-pools';
import { routingOptions } from '../support/routing.support.js';
import { waitForNoSessions } from '../support/sessions.js';

// A library that takes a pg.Pool, on the pools the module hands out: connect-pg-simple (the
// express-session store) runs its whole basic flow — creating its table, set, get, touch, destroy,
// prune — on @InjectPool() and on db.routedPool, leaving no client checked out.

jest.setTimeout(30_000);

const APP = 'e2e-consumer-connect-pg-simple';

type Store = session.Store & {
  close(): Promise<void>;
  pruneSessions(cb: (err?: unknown) => void): void;
  touch(sid: string, sess: session.SessionData, cb: (err?: unknown) => void): void;
};
type StoreClass = new (options: { pool: pg.Pool; tableName: string; createTableIfMissing: boolean; pruneSessionInterval: false; errorLog: (...args: unknown[]) => void }) => Store;
const connectPgSimple = createRequire(import.meta.url)('connect-pg-simple') as (s: typeof session) => StoreClass;
const PgStore = connectPgSimple(session);

@Injectable()
class Pools {
  constructor(
    @InjectPool() readonly primary: pg.Pool,
    readonly db: DatabaseService,
  ) {}
}

@Module({ imports: [PoolModule.forRoot(routingOptions(APP, { min: 1, max: 3, routing: { lagCheckIntervalMs: 60_000 } }))], providers: [Pools] })
class StoreModule {}

let app: INestApplication;
let pools: Pools;

beforeAll(async () => {
  const moduleRef = await Test.createTestingModule({ imports: [StoreModule] }).compile();
  app = moduleRef.createNestApplication({ logger: false });
  await app.init();
  pools = app.get(Pools);
});

afterAll(async () => {
    await app?.close();
  await waitForNoSessions(APP, { timeoutMs: 5000, everyMs: 50 });
});

function call<T>(fn: (cb: (err?: unknown, value?: T) => void) => void): Promise<T | undefined> {
  return new Promise((resolve, reject) => fn((err, value) => (err ? reject(err as Error) : resolve(value))));
}

const cookie = (maxAgeMs: number) => ({ originalMaxAge: maxAgeMs, expires: new Date(Date.now() + maxAgeMs) }) as session.Cookie;

describe.each([
  ['@InjectPool()', () => pools.primary],
  ['db.routedPool', () => pools.db.routedPool],
])('connect-pg-simple on %s', (_label, pool) => {
  // Its table.sql names the primary key "session_pkey" whatever the table: one table at a time.
  const tableName = 'consumer_sessions';
  beforeEach(() => pools.db.query(`DROP TABLE IF EXISTS ${tableName}`));
  afterEach(() => pools.db.query(`DROP TABLE IF EXISTS ${tableName}`));

  it('creates its table and runs set, get, touch, destroy and prune', async () => {
    const errors: unknown[] = [];
    const store = new PgStore({ pool: pool(), tableName, createTableIfMissing: true, pruneSessionInterval: false, errorLog: (...args) => errors.push(args) });
    const data = (user: string, maxAgeMs = 60_000) => ({ cookie: cookie(maxAgeMs), user }) as unknown as session.SessionData;

    await call<void>((cb) => store.set('sid-a', data('ada'), cb));
    await call<void>((cb) => store.set('sid-b', data('bob'), cb));
    await call<void>((cb) => store.set('sid-old', data('old', -1000), cb));
    expect(((await call<session.SessionData | null>((cb) => store.get('sid-a', cb))) as unknown as { user: string }).user).toBe('ada');
    expect(await call<session.SessionData | null>((cb) => store.get('sid-old', cb))).toBeFalsy();
    const expiry = async (sid: string) => (await pools.db.query<{ at: Date }>(`SELECT expire AS at FROM ${tableName} WHERE sid = $1`, [sid])).rows[0]!.at.getTime();
    const before = await expiry('sid-a');
    await call<void>((cb) => store.touch('sid-a', data('ada', 3_600_000), cb));
    expect(await expiry('sid-a')).toBeGreaterThan(before + 3_000_000);
    await call<void>((cb) => store.destroy('sid-b', cb));
    expect(await call<session.SessionData | null>((cb) => store.get('sid-b', cb))).toBeFalsy();
    await call<void>((cb) => store.pruneSessions(cb));
    const rows = await pools.db.query<{ sid: string }>(`SELECT sid FROM ${tableName} ORDER BY sid`);
    expect(rows.rows.map((r) => r.sid)).toEqual(['sid-a']);
    await store.close();
    expect(errors).toEqual([]);
    // The store never ends a pool it was given, and no client of the module is left checked out.
    expect(pools.primary.ending).toBe(false);
    expect(pools.primary.totalCount - pools.primary.idleCount).toBe(0);
  });
});
