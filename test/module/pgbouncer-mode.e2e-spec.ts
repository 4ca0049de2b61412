import { NamedStatementUnsupportedError, PoolConfigurationError } from 'nestjs-pg-pools';
import pg from 'pg';
import { startApp, startupError, type TestApp } from '../support/app.js';
import { adminQuery, clusterConfig, nodeOptions } from '../support/cluster.js';
import { startupParameters, TcpRelay } from '../support/tcp-relay.js';
import { waitFor } from '../support/wait.js';

// `pgbouncer: true` against the project's PgBouncer (transaction pooling, in front of the primary):
// the sample-style queries (CRUD, transactions, concurrent load) work; no `options` startup
// parameter is sent (PgBouncer would drop it silently), the time zone travels as the tracked
// TimeZone parameter, statement_timeout is applied with SET LOCAL inside transactions, and named
// prepared statements are refused with a clear error. A relay in front of PgBouncer shows the
// startup packet that actually goes over the wire.

const APP = 'e2e-pgbouncer';
const TABLE = 'pgbouncer_items';
const TIMEZONE = 'America/New_York';
const STATEMENT_TIMEOUT_MS = 1500;

/** Client connections PgBouncer holds for `applicationName` (its admin console, SHOW CLIENTS). */
async function bouncerClients(applicationName: string): Promise<number> {
  const client = new pg.Client({ ...clusterConfig.pgbouncer, database: 'pgbouncer', application_name: 'pgbouncer-e2e-admin' });
  await client.connect();
  try {
    const res = await client.query<{ application_name: string }>({ text: 'SHOW CLIENTS', queryMode: 'simple' } as pg.QueryConfig);
    return res.rows.filter((r) => r.application_name === applicationName).length;
  } finally {
    await client.end();
  }
}

describe('PgBouncer mode (real PgBouncer, transaction pooling)', () => {
  let t: TestApp;
  let relay: TcpRelay;

  beforeAll(async () => {
    relay = await new TcpRelay(clusterConfig.host, clusterConfig.pgbouncer.port).start();
    await adminQuery('primary', `CREATE TABLE IF NOT EXISTS ${TABLE} (id serial PRIMARY KEY, name text NOT NULL, qty int NOT NULL DEFAULT 0)`, [], { as: 'app' });
    await adminQuery('primary', `TRUNCATE ${TABLE}`, [], { as: 'app' });
    t = await startApp({
      preset: 'test',
      applicationName: APP,
      pgbouncer: true,
      timezone: TIMEZONE,
      statementTimeoutMs: STATEMENT_TIMEOUT_MS,
      primary: { ...nodeOptions('pgbouncer'), port: relay.port },
      min: 2,
      max: 8,
    });
  }, 30_000);

  afterAll(async () => {
    await t?.close();
    await relay?.close();
    await waitFor('no PgBouncer client left', async () => (await bouncerClients(APP)) === 0, 5000);
  }, 30_000);

  it('sends no `options` startup parameter, and the time zone as the tracked TimeZone parameter', async () => {
    expect(relay.startupPackets.length).toBeGreaterThanOrEqual(1);
    for (const packet of relay.startupPackets) {
      const params = startupParameters(packet);
      // The pool's sessions and the library's own (the node monitor's `APP:monitor`) alike.
      expect(params).toMatchObject({ user: clusterConfig.user, database: clusterConfig.database, TimeZone: TIMEZONE });
      expect(params.application_name).toMatch(new RegExp(`^${APP}(:[a-z]+)?$`));
      expect(params).not.toHaveProperty('options');
      expect(params).not.toHaveProperty('statement_timeout');
    }
    expect(relay.startupPackets.map((packet) => startupParameters(packet).application_name)).toContain(APP);
    expect((await t.db.query('SHOW TimeZone')).rows[0].TimeZone).toBe(TIMEZONE);
    expect(await t.db.transaction(async (tx) => (await tx.query('SHOW TimeZone')).rows[0].TimeZone)).toBe(TIMEZONE);
  });

  it('runs CRUD with parameters (unnamed statements) through PgBouncer', async () => {
    const created = await t.db.query<{ id: number }>(`INSERT INTO ${TABLE} (name, qty) VALUES ($1, $2) RETURNING id`, ['widget', 3]);
    const id = created.rows[0]!.id;
    expect((await t.db.query(`SELECT name, qty FROM ${TABLE} WHERE id = $1`, [id])).rows).toEqual([{ name: 'widget', qty: 3 }]);
    expect((await t.db.query(`UPDATE ${TABLE} SET qty = qty + $2 WHERE id = $1`, [id, 4])).rowCount).toBe(1);
    expect((await t.db.query(`SELECT qty FROM ${TABLE} WHERE id = $1`, [id])).rows[0].qty).toBe(7);
    expect((await t.db.query(`DELETE FROM ${TABLE} WHERE id = $1`, [id])).rowCount).toBe(1);
    expect((await t.db.query(`SELECT count(*)::int AS n FROM ${TABLE} WHERE id = $1`, [id])).rows[0].n).toBe(0);
  });

  it('commits and rolls back transactions, with statement_timeout applied by SET LOCAL inside them', async () => {
    const id = await t.db.transaction(async (tx) => {
      expect((await tx.query('SHOW statement_timeout')).rows[0].statement_timeout).toBe(`${STATEMENT_TIMEOUT_MS}ms`);
      const res = await tx.query<{ id: number }>(`INSERT INTO ${TABLE} (name) VALUES ($1) RETURNING id`, ['committed']);
      await t.db.query(`UPDATE ${TABLE} SET qty = 1 WHERE id = $1`, [res.rows[0]!.id]);
      return res.rows[0]!.id;
    });
    expect((await t.db.query(`SELECT qty FROM ${TABLE} WHERE id = $1`, [id])).rows).toEqual([{ qty: 1 }]);

    await expect(
      t.db.transaction(async (tx) => {
        await tx.query(`INSERT INTO ${TABLE} (name) VALUES ('rolled-back')`);
        throw new Error('undo');
      }),
    ).rejects.toThrow('undo');
    expect((await t.db.query(`SELECT count(*)::int AS n FROM ${TABLE} WHERE name = 'rolled-back'`)).rows[0].n).toBe(0);

    const started = Date.now();
    await expect(t.db.transaction((tx) => tx.query('SELECT pg_sleep(5)'))).rejects.toMatchObject({ code: '57014' });
    expect(Date.now() - started).toBeLessThan(4000);
    // Outside a transaction the server's (role's) own setting applies: PgBouncer cannot carry a
    // session SET, so plain statements need ALTER ROLE … SET statement_timeout (see docs/failover.md, "PgBouncer").
    expect((await t.db.query('SHOW statement_timeout')).rows[0].statement_timeout).not.toBe(`${STATEMENT_TIMEOUT_MS}ms`);
  }, 15_000);

  it('refuses named prepared statements with a clear error and keeps the pool intact', async () => {
    const before = t.db.primary.pool.totalCount;
    const err = await t.db.query({ name: 'item-by-id', text: `SELECT * FROM ${TABLE} WHERE id = $1`, values: [1] }).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(NamedStatementUnsupportedError);
    expect(err).toMatchObject({ code: 'NAMED_STATEMENT_UNSUPPORTED', database: 'default', statement: 'item-by-id' });
    expect((err as Error).message).toMatch(/^Cannot run the named prepared statement "item-by-id" on "default" because the pool is in PgBouncer mode \(pgbouncer: true\)/);
    expect((err as Error).message).toContain('Please make sure that the query has no `name`');
    await expect(t.db.transaction((tx) => tx.query({ name: 'in-tx', text: 'SELECT 1' }))).rejects.toBeInstanceOf(NamedStatementUnsupportedError);
    expect(t.db.primary.pool.totalCount).toBe(before);
    expect(t.db.primary.pool.totalCount - t.db.primary.pool.idleCount).toBe(0);
  });

  it('serves a concurrent load (more callers than connections) and returns to its baseline', async () => {
    const callers = 24;
    const rounds = 10;
    const results = await Promise.all(
      Array.from({ length: callers }, async (_, worker) => {
        for (let i = 0; i < rounds; i++) {
          if (i % 3 === 0) {
            await t.db.transaction(async (tx) => {
              const res = await tx.query<{ id: number }>(`INSERT INTO ${TABLE} (name, qty) VALUES ($1, $2) RETURNING id`, [`load-${worker}`, i]);
              await tx.query(`UPDATE ${TABLE} SET qty = qty + 1 WHERE id = $1`, [res.rows[0]!.id]);
            });
          } else {
            await t.db.query(`SELECT count(*) FROM ${TABLE} WHERE name = $1`, [`load-${worker}`]);
          }
        }
        return worker;
      }),
    );
    expect(results).toHaveLength(callers);
    expect((await t.db.query(`SELECT count(*)::int AS n FROM ${TABLE} WHERE name LIKE 'load-%'`)).rows[0].n).toBe(callers * Math.ceil(rounds / 3));
    const pool = t.db.primary.pool;
    expect(pool.waitingCount).toBe(0);
    expect(pool.totalCount - pool.idleCount).toBe(0);
    expect(pool.totalCount).toBeLessThanOrEqual(8);
    expect(await bouncerClients(APP)).toBe(pool.totalCount);
  }, 30_000);

  it('rejects startup parameters PgBouncer would drop or refuse, naming the field', async () => {
    const err = await startupError({ applicationName: `${APP}-config`, pgbouncer: true, lazy: true, primary: { ...nodeOptions('pgbouncer'), options: '-c search_path=app' } });
    expect(err).toBeInstanceOf(PoolConfigurationError);
    expect((err as Error).message).toMatch(/^Invalid option `primary\.options`: expected no value while pgbouncer is true \(PgBouncer drops or refuses this startup parameter\), got "-c search_path=app" \(string\)\./);
    const lock = await startupError({ applicationName: `${APP}-config`, pgbouncer: true, lazy: true, primary: nodeOptions('pgbouncer'), replicas: [{ ...nodeOptions('replica1'), lock_timeout: 1000 }] });
    expect((lock as Error).message).toMatch(/^Invalid option `replicas\[0\]\.lock_timeout`/);
  });
});
