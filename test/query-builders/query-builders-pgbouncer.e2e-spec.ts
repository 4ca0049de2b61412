import type { PoolModuleRootOptions } from 'nestjs-pg-pools';
import { Kysely, PostgresDialect, sql } from 'kysely';
import { drizzle } from 'drizzle-orm/node-postgres';
import { sql as dsql } from 'drizzle-orm';
import { startApp, type TestApp } from '../support/app.js';
import { nodeOptions } from '../support/cluster.js';

// Kysely and Drizzle on db.routedPool with `pgbouncer: true` against the project's PgBouncer
// (transaction pooling): plain queries and the builders' own transactions work, and because a
// session SET does not survive transaction pooling, each builder transaction gets the
// statement deadline with SET LOCAL, as db.transaction() does — a statement that runs too long
// is cancelled (57014) instead of holding the connection.

const APP = 'e2e-query-builders-pgbouncer';

/** The suite's pool options: the test preset, this file's application name, and `extra`. */
const options = (extra: Partial<PoolModuleRootOptions>): PoolModuleRootOptions => ({ preset: 'test', applicationName: APP, ...extra });
const STATEMENT_TIMEOUT_MS = 1500;

describe('query builders on db.routedPool behind PgBouncer (real PgBouncer, transaction pooling)', () => {
  let t: TestApp;

  beforeAll(async () => {
    t = await startApp(options({ pgbouncer: true, statementTimeoutMs: STATEMENT_TIMEOUT_MS, primary: nodeOptions('pgbouncer'), min: 1, max: 4 }));
  }, 30_000);

  afterAll(async () => {
    await t?.close();
  });

  it('Kysely: plain queries work; its transactions carry statementTimeoutMs and a statement past it is cancelled', async () => {
    const kysely = new Kysely<Record<string, never>>({ dialect: new PostgresDialect({ pool: t.db.routedPool }) });
    expect((await sql<{ n: number }>`SELECT 1 + 1 AS n`.execute(kysely)).rows).toEqual([{ n: 2 }]);
    const shown = await kysely.transaction().execute(async (trx) => (await sql<{ statement_timeout: string }>`SHOW statement_timeout`.execute(trx)).rows[0]!.statement_timeout);
    expect(shown).toBe(`${STATEMENT_TIMEOUT_MS}ms`);
    const started = Date.now();
    await expect(kysely.transaction().execute((trx) => sql`SELECT pg_sleep(5)`.execute(trx))).rejects.toMatchObject({ code: '57014' });
    expect(Date.now() - started).toBeLessThan(4000);
    expect(t.db.routedPool.totalCount - t.db.routedPool.idleCount).toBe(0);
  }, 15_000);

  it('Drizzle: its transactions carry statementTimeoutMs too', async () => {
    const db = drizzle(t.db.routedPool);
    const shown = await db.transaction(async (tx) => (await tx.execute<{ statement_timeout: string }>(dsql`SHOW statement_timeout`)).rows[0]!.statement_timeout);
    expect(shown).toBe(`${STATEMENT_TIMEOUT_MS}ms`);
  });
});
