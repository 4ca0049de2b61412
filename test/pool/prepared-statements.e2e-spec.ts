import { PreparedStatementInvalidatedError } from 'nestjs-pg-pools';
import pg, { type PoolClient } from 'pg';
import { Kysely, PostgresDialect, sql } from 'kysely';
import request from 'supertest';
import { startApp, type TestApp } from '../support/app.js';
import { adminQuery, nodeOptions, replicaOptions } from '../support/cluster.js';
import { terminateSessions } from '../support/sessions.js';
import { waitFor } from '../support/wait.js';
import { waitForReplay } from '../support/routing.support.js';

// Automatic prepared statements on the real cluster: a parameterized statement sent `threshold`
// times on a connection runs as a named statement there (`pg_prepared_statements` of that session
// shows it), each session holds at most `cacheSize`, and schema changes, DISCARD ALL and
// terminated sessions cost no failed autocommit statement; inside a transaction a refused plan
// fails with PreparedStatementInvalidatedError.

const APP = 'e2e-prepared';
const TABLE = 'prepared_items';
const OTHER = 'prepared_tags';
const BY_ID = `SELECT * FROM ${TABLE} WHERE id = $1`;
const JOIN = `SELECT i.id, i.name, t.tag FROM ${TABLE} i JOIN ${OTHER} t ON t.item_id = i.id WHERE i.id = $1 AND t.tag LIKE $2 ORDER BY t.tag LIMIT 1`;

async function resetTables(): Promise<void> {
  await adminQuery('primary', `DROP TABLE IF EXISTS ${OTHER}, ${TABLE}`, [], { as: 'app' });
  await adminQuery('primary', `CREATE TABLE ${TABLE} (id int PRIMARY KEY, name text NOT NULL)`, [], { as: 'app' });
  await adminQuery('primary', `CREATE TABLE ${OTHER} (item_id int NOT NULL, tag text NOT NULL)`, [], { as: 'app' });
  await adminQuery('primary', `INSERT INTO ${TABLE} SELECT g, 'item-' || g FROM generate_series(1, 1000) g`, [], { as: 'app' });
  await adminQuery('primary', `INSERT INTO ${OTHER} SELECT g, 'tag-' || g FROM generate_series(1, 1000) g`, [], { as: 'app' });
  // The replica reads below need the tables there too.
  await Promise.all([waitForReplay('replica1'), waitForReplay('replica2')]);
}

/** The session's own prepared statements (run on the client itself: no values, so never prepared). */
async function preparedOn(client: PoolClient): Promise<string[]> {
  const res = await client.query<{ name: string }>('SELECT name FROM pg_prepared_statements ORDER BY name');
  return res.rows.map((r) => r.name);
}

function counters(t: TestApp, node = t.cluster.primary) {
  const c = node.counters;
  return { hits: c.preparedHits, misses: c.preparedMisses, evictions: c.preparedEvictions, invalidations: c.preparedInvalidations };
}

describe('automatic prepared statements (real cluster)', () => {
  beforeAll(resetTables, 30_000);

  describe('defaults, one connection', () => {
    let t: TestApp;
    beforeAll(async () => {
      t = await startApp({ preset: 'test', applicationName: APP, primary: nodeOptions('primary'), replicas: replicaOptions(), min: 1, max: 1, metrics: { enabled: true } });
    }, 30_000);
    afterAll(() => t?.close(), 30_000);

    it('runs a statement as a prepared one from its third send on a connection, and counts hits and misses', async () => {
      const before = counters(t);
      for (let i = 1; i <= 6; i++) {
        const res = await t.db.query(BY_ID, [i]);
        expect(res.rows).toEqual([{ id: i, name: `item-${i}` }]);
      }
      const after = counters(t);
      expect(after.misses - before.misses).toBe(3);
      expect(after.hits - before.hits).toBe(3);
      const names = await t.db.withClient(preparedOn);
      expect(names.filter((n) => n.startsWith('__pgp_'))).toHaveLength(1);
    });

    it('leaves statements without values, and statements with their own name, alone', async () => {
      const before = counters(t);
      for (let i = 0; i < 5; i++) await t.db.query(`SELECT count(*)::int AS n FROM ${TABLE}`);
      for (let i = 0; i < 5; i++) await t.db.query({ name: 'mine', text: `SELECT name FROM ${TABLE} WHERE id = $1`, values: [i + 1] });
      expect(counters(t).hits - before.hits).toBe(0);
      expect(counters(t).misses - before.misses).toBe(0);
      const names = await t.db.withClient(preparedOn);
      expect(names).toContain('mine');
      expect(names.filter((n) => n.startsWith('__pgp_'))).toHaveLength(1);
    });

    it('goes the same way through withClient, transactions and db.routedPool (query and connect)', async () => {
      const before = counters(t).hits;
      await t.db.withClient(async (c) => {
        for (let i = 0; i < 3; i++) expect((await c.query(BY_ID, [7])).rows[0].name).toBe('item-7');
      });
      await t.db.transaction(async (tx) => {
        for (let i = 0; i < 3; i++) expect((await tx.query(BY_ID, [8])).rows[0].name).toBe('item-8');
      });
      for (let i = 0; i < 3; i++) expect((await t.db.routedPool.query(BY_ID, [9])).rows[0].name).toBe('item-9');
      const lent = await t.db.routedPool.connect();
      try {
        for (let i = 0; i < 3; i++) expect((await lent.query(BY_ID, [10])).rows[0].name).toBe('item-10');
        await new Promise<void>((resolve, reject) => {
          lent.query(BY_ID, [11], (err, res) => (err ? reject(err) : (expect(res.rows[0].name).toBe('item-11'), resolve())));
        });
      } finally {
        lent.release();
      }
      expect(counters(t).hits - before).toBe(13);
    });

    it('gives Kysely on db.routedPool the prepared path', async () => {
      const k = new Kysely<any>({ dialect: new PostgresDialect({ pool: t.db.routedPool }) });
      const before = counters(t).hits;
      for (let i = 0; i < 5; i++) {
        const row = await k.selectFrom(TABLE).select(['id', 'name']).where('id', '=', 12).executeTakeFirstOrThrow();
        expect(row).toEqual({ id: 12, name: 'item-12' });
      }
      expect(counters(t).hits - before).toBeGreaterThanOrEqual(2);
      expect((await sql<{ n: number }>`SELECT ${1}::int AS n`.execute(k)).rows[0]!.n).toBe(1);
    });

    it("prepares a QueryConfig with rowMode 'array' and result type parsers, as Prisma's and Drizzle's adapters send", async () => {
      const before = counters(t).hits;
      const types = { getTypeParser: pg.types.getTypeParser };
      for (let i = 0; i < 5; i++) {
        const res = await t.db.routedPool.query({ text: BY_ID, values: [15], rowMode: 'array', types } as pg.QueryConfig);
        expect(res.rows).toEqual([[15, 'item-15']]);
      }
      expect(counters(t).hits - before).toBeGreaterThanOrEqual(2);
    });

    it('prepares on replicas too (db.replica)', async () => {
      const replicaHits = () => t.cluster.nodes.filter((n) => n !== t.cluster.primary).reduce((s, n) => s + n.counters.preparedHits, 0);
      const before = replicaHits();
      for (let i = 0; i < 12; i++) expect((await t.db.replica.query(BY_ID, [13])).rows[0].name).toBe('item-13');
      expect(replicaHits() - before).toBeGreaterThan(0);
    });

    it('re-runs a statement whose prepared plan DDL invalidated (0A000), outside a transaction', async () => {
      for (let i = 0; i < 3; i++) await t.db.query(BY_ID, [1]);
      const named = await t.db.withClient((c) => c.query<{ name: string }>('SELECT name FROM pg_prepared_statements WHERE statement = $1', [BY_ID]));
      const stale = named.rows.map((r) => r.name);
      expect(stale).toHaveLength(1);
      const before = counters(t);
      await adminQuery('primary', `ALTER TABLE ${TABLE} ADD COLUMN extra int`, [], { as: 'app' });
      const res = await t.db.query(BY_ID, [1]);
      expect(res.rows).toEqual([{ id: 1, name: 'item-1', extra: null }]);
      expect(counters(t).invalidations - before.invalidations).toBe(1);
      // The stale statement was deallocated; the text gets a new name once it is prepared again.
      for (let i = 0; i < 3; i++) await t.db.query(BY_ID, [2]);
      const held = await t.db.withClient((c) => c.query<{ name: string }>('SELECT name FROM pg_prepared_statements WHERE statement = $1', [BY_ID]));
      expect(held.rows).toHaveLength(1);
      expect(held.rows[0]!.name).not.toBe(stale[0]);
      await adminQuery('primary', `ALTER TABLE ${TABLE} DROP COLUMN extra`, [], { as: 'app' });
      expect((await t.db.query(BY_ID, [3])).rows).toEqual([{ id: 3, name: 'item-3' }]);
    });

    it('fails a transaction hit by it with PreparedStatementInvalidatedError (code 0A000), and never re-runs the statement there', async () => {
      for (let i = 0; i < 4; i++) await t.db.query(BY_ID, [1]);
      await adminQuery('primary', `ALTER TABLE ${TABLE} ADD COLUMN extra int`, [], { as: 'app' });
      const before = t.cluster.primary.counters.queries;
      const failure = await t.db
        .transaction(async (tx) => {
          await tx.query(BY_ID, [1]);
          return 'committed';
        })
        .catch((err: unknown) => err);
      expect(failure).toBeInstanceOf(PreparedStatementInvalidatedError);
      expect((failure as PreparedStatementInvalidatedError).code).toBe('0A000');
      expect((failure as Error).message).toMatch(/retried|preparedStatements\.enabled/);
      // BEGIN, the statement (once), ROLLBACK.
      expect(t.cluster.primary.counters.queries - before).toBeLessThanOrEqual(3);
      // The transaction retried as a whole works.
      const again = await t.db.transaction((tx) => tx.query(BY_ID, [1]));
      expect(again.rows).toEqual([{ id: 1, name: 'item-1', extra: null }]);
      await adminQuery('primary', `ALTER TABLE ${TABLE} DROP COLUMN extra`, [], { as: 'app' });
      await t.db.query(BY_ID, [1]);
    });

    it('survives DISCARD ALL on the session (26000): the statement runs again, then is prepared under a new name', async () => {
      for (let i = 0; i < 4; i++) await t.db.query(BY_ID, [1]);
      const oldNames = (await t.db.withClient(preparedOn)).filter((n) => n.startsWith('__pgp_'));
      expect(oldNames.length).toBeGreaterThanOrEqual(1);
      await t.db.withClient((c) => c.query('DISCARD ALL'));
      const before = counters(t);
      for (let i = 0; i < 5; i++) expect((await t.db.query(BY_ID, [4])).rows[0].name).toBe('item-4');
      expect(counters(t).invalidations - before.invalidations).toBe(1);
      expect(counters(t).hits - before.hits).toBeGreaterThanOrEqual(2);
      const names = (await t.db.withClient(preparedOn)).filter((n) => n.startsWith('__pgp_'));
      expect(names).toHaveLength(1);
      expect(oldNames).not.toContain(names[0]);
    });

    it('keeps its statements through the session reset on release (a client that changed a setting)', async () => {
      for (let i = 0; i < 4; i++) await t.db.query(BY_ID, [6]);
      const before = counters(t);
      await t.db.withClient((c) => c.query("SET application_name = 'e2e-prepared-changed'"));
      const after = await t.db.withClient(async (c) => [(await c.query<{ application_name: string }>('SHOW application_name')).rows[0]!.application_name, await preparedOn(c)] as const);
      expect(after[0]).not.toBe('e2e-prepared-changed');
      expect(after[1].filter((n) => n.startsWith('__pgp_')).length).toBeGreaterThan(0);
      expect((await t.db.query(BY_ID, [6])).rows[0].name).toBe('item-6');
      expect(counters(t).hits - before.hits).toBe(1);
      expect(counters(t).invalidations).toBe(before.invalidations);
    });

    it('shows the counters per node in GET /metrics/db-pool and in Prometheus', async () => {
      const server = request(t.app.getHttpServer());
      const json = await server.get('/metrics/db-pool').expect(200);
      const node = json.body.databases.default.nodes.primary.counters;
      expect(node.preparedHits).toBe(t.cluster.primary.counters.preparedHits);
      expect(node.preparedHits).toBeGreaterThan(0);
      for (const key of ['preparedMisses', 'preparedEvictions', 'preparedInvalidations']) expect(typeof node[key]).toBe('number');
      const text = (await server.get('/metrics').expect(200)).text;
      expect(text).toMatch(/db_prepared_statements_total\{[^}]*node="primary"[^}]*result="hit"[^}]*\} [1-9]/);
      expect(text).toMatch(/db_prepared_statements_dropped_total\{[^}]*reason="invalidation"[^}]*\} [1-9]/);
    });
  });

  it('keeps every session within cacheSize (pg_prepared_statements), deallocating the least recently used', async () => {
    const t = await startApp({ preset: 'test', applicationName: `${APP}-bound`, primary: nodeOptions('primary'), min: 2, max: 2, preparedStatements: { threshold: 1, cacheSize: 5 } });
    try {
      const texts = Array.from({ length: 30 }, (_, k) => `SELECT $1::int + ${k} AS v`);
      await Promise.all(
        Array.from({ length: 4 }, async () => {
          for (let round = 0; round < 3; round++) {
            for (const [k, text] of texts.entries()) expect((await t.db.query(text, [round])).rows[0].v).toBe(round + k);
          }
        }),
      );
      expect(counters(t).evictions).toBeGreaterThan(0);
      // A connection that dropped 4 × cacheSize names is retired at its next release and replaced,
      // so either may be fresh after the load: three more statements on each (while held, so none
      // is retired) make sure both have prepared some, on top of whatever the load left.
      const held = await t.db.withClient((a) =>
        t.db.withClient(async (b) => {
          for (const client of [a, b]) for (const [k, text] of texts.slice(0, 3).entries()) expect((await client.query(text, [0])).rows[0].v).toBe(k);
          return [await preparedOn(a), await preparedOn(b)];
        }),
      );
      expect(held[0]!.length + held[1]!.length).toBeGreaterThan(0);
      for (const names of held) expect(names.length).toBeGreaterThan(0);
      for (const names of held) expect(names.length).toBeLessThanOrEqual(5);
    } finally {
      await t.close();
    }
  }, 60_000);

  it('gives 0 failed autocommit statements while the table is altered and dropped+created under load', async () => {
    const t = await startApp({ preset: 'test', applicationName: `${APP}-ddl`, primary: nodeOptions('primary'), min: 4, max: 4, preparedStatements: { threshold: 1 } });
    const failures: unknown[] = [];
    let ok = 0;
    let running = true;
    try {
      const workers = Array.from({ length: 8 }, async (_, w) => {
        while (running) {
          const id = 1 + ((ok + w) % 1000);
          try {
            await t.db.query(BY_ID, [id]);
            await t.db.query(JOIN, [id, 'tag-%']);
            ok++;
          } catch (err) {
            failures.push(err);
          }
        }
      });
      await waitFor('the load to warm every connection', () => ok > 200, 10_000);
      await adminQuery('primary', `ALTER TABLE ${TABLE} ADD COLUMN extra int`, [], { as: 'app' });
      const afterAlter = ok;
      await waitFor('statements after ALTER', () => ok > afterAlter + 200, 10_000);
      await adminQuery(
        'primary',
        `BEGIN; DROP TABLE ${TABLE}; CREATE TABLE ${TABLE} (id int PRIMARY KEY, name text NOT NULL, added text);
         INSERT INTO ${TABLE} SELECT g, 'item-' || g FROM generate_series(1, 1000) g; COMMIT`,
        [],
        { as: 'app' },
      );
      const afterRecreate = ok;
      await waitFor('statements after DROP+CREATE', () => ok > afterRecreate + 200, 10_000);
      running = false;
      await Promise.all(workers);
      expect(failures).toEqual([]);
      expect(counters(t).invalidations).toBeGreaterThan(0);
      expect(counters(t).hits).toBeGreaterThan(0);
    } finally {
      running = false;
      await t.close();
      await resetTables();
    }
  }, 60_000);

  it('gives 0 user errors when sessions holding prepared statements are terminated (pg_terminate_backend)', async () => {
    const app = `${APP}-kill`;
    const t = await startApp({ preset: 'test', applicationName: app, primary: nodeOptions('primary'), min: 4, max: 4 });
    const failures: unknown[] = [];
    let ok = 0;
    let running = true;
    try {
      const workers = Array.from({ length: 6 }, async (_, w) => {
        while (running) {
          try {
            await t.db.query(BY_ID, [1 + ((ok + w) % 1000)]);
            ok++;
          } catch (err) {
            failures.push(err);
          }
          // A gap between statements, so the terminations find idle pooled sessions.
          await new Promise((resolve) => setTimeout(resolve, 2));
        }
      });
      await waitFor('prepared statements in use', () => t.cluster.primary.counters.preparedHits > 100, 10_000);
      let killed = 0;
      for (let round = 0; round < 3; round++) {
        killed += await terminateSessions('primary', app);
        const mark = ok;
        await waitFor('statements after the terminations', () => ok > mark + 50, 10_000);
      }
      running = false;
      await Promise.all(workers);
      expect(killed).toBeGreaterThan(0);
      expect(failures).toEqual([]);
      const hitsBefore = t.cluster.primary.counters.preparedHits;
      for (let i = 0; i < 5; i++) await t.db.query(BY_ID, [5]);
      expect(t.cluster.primary.counters.preparedHits).toBeGreaterThan(hitsBefore);
    } finally {
      running = false;
      await t.close();
    }
  }, 60_000);

  it('stays off with pgbouncer: true (defaults): no generated statement on any session', async () => {
    const t = await startApp({ preset: 'test', applicationName: `${APP}-bouncer`, pgbouncer: true, primary: nodeOptions('pgbouncer'), min: 1, max: 2 });
    try {
      for (let i = 0; i < 6; i++) expect((await t.db.query(BY_ID, [i + 1])).rows[0].name).toBe(`item-${i + 1}`);
      expect(counters(t)).toEqual({ hits: 0, misses: 0, evictions: 0, invalidations: 0 });
    } finally {
      await t.close();
    }
  }, 30_000);
});
