import { jest } from '@jest/globals';
import { Test, type TestingModule } from '@nestjs/testing';
import type { Pool } from 'pg';
import { DatabaseService, PoolModule, getPoolToken } from 'nestjs-pg-pools';
import { adminQuery, clusterConfig, nodeOptions } from '../support/cluster.js';
import { poolSessionCounts, totalSessions, waitUntil } from '../support/foundation-db.js';

jest.setTimeout(15_000);

const APP = 'fnd-database-service';
const TABLE = 'fnd_service_items';
const { primary } = clusterConfig.ports;

let app: TestingModule;
let db: DatabaseService;
let pool: Pool;

beforeAll(async () => {
  await adminQuery('primary', `CREATE TABLE IF NOT EXISTS ${TABLE} (id serial PRIMARY KEY, label text NOT NULL UNIQUE)`);
  await adminQuery('primary', `GRANT ALL ON ${TABLE} TO ${clusterConfig.user}`);
  await adminQuery('primary', `GRANT USAGE ON SEQUENCE ${TABLE}_id_seq TO ${clusterConfig.user}`);
  app = await Test.createTestingModule({
    imports: [PoolModule.forRoot({ primary: nodeOptions('primary'), applicationName: APP, min: 2, max: 4, acquireTimeoutMs: 2000, sizingAdvisor: false, env: {} })],
  }).compile();
  await app.init();
  db = app.get(DatabaseService);
  pool = app.get<Pool>(getPoolToken());
});

beforeEach(async () => {
  await adminQuery('primary', `TRUNCATE ${TABLE}`);
});

afterAll(async () => {
  await app?.close();
  await adminQuery('primary', `DROP TABLE IF EXISTS ${TABLE}`);
});

/** Rows as another session sees them: only committed data. */
async function committedLabels(): Promise<string[]> {
  return (await adminQuery<{ label: string }>('primary', `SELECT label FROM ${TABLE} ORDER BY id`)).map((r) => r.label);
}

function poolState() {
  return { total: pool.totalCount, idle: pool.idleCount, inUse: pool.totalCount - pool.idleCount, waiting: pool.waitingCount };
}

describe('query', () => {
  it('runs a parameterised statement on the primary', async () => {
    const { rows } = await db.query<{ sum: number; port: number }>('SELECT $1::int + $2::int AS sum, inet_server_port() AS port', [2, 3]);
    expect(rows).toEqual([{ sum: 5, port: primary }]);
    expect(poolState().inUse).toBe(0);
  });

  it('rejects with the server error and keeps the connection for the next caller', async () => {
    const before = poolState();
    await expect(db.query('SELECT * FROM fnd_no_such_table')).rejects.toMatchObject({ code: '42P01' });
    expect(poolState()).toEqual({ ...before, inUse: 0, waiting: 0 });
  });
});

describe('withClient', () => {
  it('lends one client for several statements and gives it back', async () => {
    const pids = await db.withClient(async (client) => {
      const a = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      const b = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      expect(poolState().inUse).toBe(1);
      return [a.rows[0]!.pid, b.rows[0]!.pid];
    });
    expect(pids[0]).toBe(pids[1]);
    expect(poolState().inUse).toBe(0);
  });

  it('releases the client when fn throws, and rethrows the same error', async () => {
    const before = poolState();
    const sessionsBefore = (await poolSessionCounts(APP)).primary;
    const failure = new Error('business rule failed');
    await expect(
      db.withClient(async (client) => {
        await client.query('SELECT 1');
        throw failure;
      }),
    ).rejects.toBe(failure);
    await expect(db.withClient(async (client) => client.query('SELEC 1'))).rejects.toMatchObject({ code: '42601' });
    await expect(
      db.withClient(() => {
        throw failure;
      }),
    ).rejects.toBe(failure);
    expect(poolState()).toEqual({ ...before, inUse: 0, waiting: 0 });
    expect((await poolSessionCounts(APP)).primary).toBe(sessionsBefore);
  });

  it('does not run out of clients after many failing callbacks (max 4)', async () => {
    for (let i = 0; i < 12; i++) {
      await expect(
        db.withClient(async () => {
          throw new Error(`failure ${i}`);
        }),
      ).rejects.toThrow(`failure ${i}`);
    }
    await expect(db.query('SELECT 1 AS ok')).resolves.toMatchObject({ rows: [{ ok: 1 }] });
    expect(poolState().total).toBeLessThanOrEqual(4);
  });
});

describe('transaction', () => {
  it('commits on success: rows are invisible to others until COMMIT', async () => {
    const result = await db.transaction(async (tx) => {
      await tx.query(`INSERT INTO ${TABLE} (label) VALUES ($1), ($2)`, ['a', 'b']);
      expect(await committedLabels()).toEqual([]);
      expect(poolState().inUse).toBe(1);
      return 'done';
    });
    expect(result).toBe('done');
    expect(await committedLabels()).toEqual(['a', 'b']);
    expect(poolState().inUse).toBe(0);
  });

  it('rolls back when fn throws, rethrows the error and releases the client', async () => {
    const failure = new Error('payment declined');
    await expect(
      db.transaction(async (tx) => {
        await tx.query(`INSERT INTO ${TABLE} (label) VALUES ('lost')`);
        throw failure;
      }),
    ).rejects.toBe(failure);
    await expect(
      db.transaction(async (tx) => {
        await tx.query(`INSERT INTO ${TABLE} (label) VALUES ('dup')`);
        await tx.query(`INSERT INTO ${TABLE} (label) VALUES ('dup')`);
      }),
    ).rejects.toMatchObject({ code: '23505' });
    expect(await committedLabels()).toEqual([]);
    expect(poolState().inUse).toBe(0);
  });

  it('nested transaction() and db.query() inside fn join the same client; an outer throw rolls everything back', async () => {
    const pids: number[] = [];
    const pid = async (run: { query: DatabaseService['query'] }) => (await run.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    await expect(
      db.transaction(async (outer) => {
        pids.push(await pid(outer));
        await outer.query(`INSERT INTO ${TABLE} (label) VALUES ('outer')`);
        await db.transaction(async (inner) => {
          pids.push(await pid(inner));
          await inner.query(`INSERT INTO ${TABLE} (label) VALUES ('inner')`);
        });
        pids.push(await pid(db));
        await db.query(`INSERT INTO ${TABLE} (label) VALUES ('via-service')`);
        expect((await db.query(`SELECT label FROM ${TABLE}`)).rows).toHaveLength(3);
        expect(await committedLabels()).toEqual([]);
        throw new Error('abort all');
      }),
    ).rejects.toThrow('abort all');
    expect(new Set(pids).size).toBe(1);
    expect(await committedLabels()).toEqual([]);
    expect(poolState().inUse).toBe(0);
  });

  it('commits a nested transaction together with the outer one', async () => {
    await db.transaction(async (outer) => {
      await outer.query(`INSERT INTO ${TABLE} (label) VALUES ('first')`);
      await db.transaction((inner) => inner.query(`INSERT INTO ${TABLE} (label) VALUES ('second')`));
      expect(await committedLabels()).toEqual([]);
    });
    expect(await committedLabels()).toEqual(['first', 'second']);
    expect(poolState().inUse).toBe(0);
  });
});

describe('after all of the above', () => {
  it('leaves no client checked out and no server session beyond the pool', async () => {
    expect(poolState().inUse).toBe(0);
    const sessions = await waitUntil(() => totalSessions(APP), (n) => n <= 4);
    expect(sessions).toBe(pool.totalCount);
  });
});
