import type { Provider } from '@nestjs/common';
import { sql as dsql, eq } from 'drizzle-orm';
import { drizzle, type NodePgDatabase } from 'drizzle-orm/node-postgres';
import { integer, pgTable, text } from 'drizzle-orm/pg-core';
import { Kysely, PostgresDialect, sql as ksql } from 'kysely';
import { DatabaseService } from 'nestjs-pg-pools';
import { serverAt, type Where } from './routing.support.js';

// Kysely and Drizzle wired on db.routedPool as plain provider factories over DatabaseService (as
// docs/query-builders.md shows), and the "which server answered" reads of the query-builder e2e tests.

export const QB_TABLE = 'qb_e2e';

export interface QbDatabase {
  qb_e2e: { id: number; note: string };
}

export const qbItems = pgTable(QB_TABLE, { id: integer('id').primaryKey(), note: text('note').notNull() });

export const KYSELY = Symbol('KYSELY');
export const DRIZZLE = Symbol('DRIZZLE');

export type QbKysely = Kysely<QbDatabase>;
export type QbDrizzle = NodePgDatabase;

export const queryBuilderProviders: Provider[] = [
  {
    provide: KYSELY,
    inject: [DatabaseService],
    useFactory: (db: DatabaseService): QbKysely => new Kysely<QbDatabase>({ dialect: new PostgresDialect({ pool: db.routedPool }) }),
  },
  { provide: DRIZZLE, inject: [DatabaseService], useFactory: (db: DatabaseService): QbDrizzle => drizzle(db.routedPool) },
];

/** Id of the row every "which server answered" read selects (present on every node before the tests). */
export const SEED_ID = 0;

/** Which server answered a Kysely `selectFrom … where id = $1`. */
export async function kyselyWhere(k: QbKysely, id = SEED_ID): Promise<Where> {
  const row = await k
    .selectFrom('qb_e2e')
    .select([ksql<number>`inet_server_port()`.as('port'), ksql<boolean>`pg_is_in_recovery()`.as('recovery'), ksql<number>`pg_backend_pid()`.as('pid')])
    .where('id', '=', id)
    .executeTakeFirstOrThrow();
  return { node: serverAt(row.port), recovery: row.recovery, pid: row.pid };
}

/** Which server answered a Drizzle `select … from … where id = $1` (pg's `rowMode: 'array'`). */
export async function drizzleWhere(d: QbDrizzle, id = SEED_ID): Promise<Where> {
  const [row] = await d
    .select({ port: dsql<number>`inet_server_port()`, recovery: dsql<boolean>`pg_is_in_recovery()`, pid: dsql<number>`pg_backend_pid()` })
    .from(qbItems)
    .where(eq(qbItems.id, id));
  if (row === undefined) throw new Error(`no ${QB_TABLE} row ${id}`);
  return { node: serverAt(row.port), recovery: row.recovery, pid: row.pid };
}

export async function kyselyTxid(k: QbKysely): Promise<string> {
  const { rows } = await ksql<{ txid: string }>`SELECT txid_current()::text AS txid`.execute(k);
  return rows[0]!.txid;
}

export async function drizzleTxid(d: QbDrizzle): Promise<string> {
  const res = await d.execute<{ txid: string }>(dsql`SELECT txid_current()::text AS txid`);
  return res.rows[0]!.txid;
}

export function kyselyInsert(k: QbKysely, id: number, note = 'kysely'): Promise<unknown> {
  return k.insertInto('qb_e2e').values({ id, note }).execute();
}

export function drizzleInsert(d: QbDrizzle, id: number, note = 'drizzle'): Promise<unknown> {
  return d.insert(qbItems).values({ id, note });
}

/** Kysely: is row `id` there (and which server said so)? */
export async function kyselyFind(k: QbKysely, id: number): Promise<{ found: boolean; node: Where['node'] }> {
  const row = await k
    .selectNoFrom([ksql<number>`inet_server_port()`.as('port'), ksql<boolean>`EXISTS (SELECT 1 FROM qb_e2e WHERE id = ${id})`.as('found')])
    .executeTakeFirstOrThrow();
  return { found: row.found, node: serverAt(row.port) };
}

/** Drizzle: is row `id` there (and which server said so)? */
export async function drizzleFind(d: QbDrizzle, id: number): Promise<{ found: boolean; node: Where['node'] }> {
  const res = await d.execute<{ port: number; found: boolean }>(dsql`SELECT inet_server_port() AS port, EXISTS (SELECT 1 FROM qb_e2e WHERE id = ${id}) AS found`);
  return { found: res.rows[0]!.found, node: serverAt(res.rows[0]!.port) };
}
