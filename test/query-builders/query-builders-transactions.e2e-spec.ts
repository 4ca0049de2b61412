import { jest } from '@jest/globals';
import { Injectable, Module, type INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { sql as dsql } from 'drizzle-orm';
import { AbortedTransactionError } from 'kysely';
import { DatabaseService, PoolModule, PoolError, ReadOnly, Transactional } from 'nestjs-pg-pools';
import { adminQuery } from '../support/cluster.js';
import { expectNoSessionsLeft } from '../support/sessions.js';
import { DRIZZLE, drizzleInsert, drizzleTxid, drizzleWhere, KYSELY, kyselyInsert, kyselyTxid, kyselyWhere, QB_TABLE, QbHandles, queryBuilderProviders, SEED_ID, type QbDrizzle, type QbKysely } from '../support/query-builders.js';
import { routingOptions, waitForReplay, type Where } from '../support/routing.support.js';

// The query builders' own transactions on db.routedPool, with the real Kysely and Drizzle on the
// real primary:
// - outside a library transaction, kysely.transaction().execute() / drizzle.transaction() run
//   their own BEGIN … COMMIT / ROLLBACK on one primary client, held until they release it (even
//   when called under @ReadOnly());
// - inside db.transaction() / @Transactional() they join it: their BEGIN / COMMIT / ROLLBACK
//   become a savepoint, so their rollback undoes only their part, their commit is not the outer
//   commit, and the outer rollback undoes them too.
// What is committed is checked from outside (a separate session on the primary).

const APP = 'e2e-query-builders-tx';

jest.setTimeout(30_000);

let nextId = 1000;
const newId = () => nextId++;

async function present(ids: number[]): Promise<number[]> {
  const rows = await adminQuery<{ id: number }>('primary', `SELECT id FROM ${QB_TABLE} WHERE id = ANY($1::int[]) ORDER BY id`, [ids], { as: 'app' });
  return rows.map((r) => r.id);
}

class Planned extends Error {}

@Injectable()
class QbTransactions extends QbHandles {
  @ReadOnly()
  kyselyOwnUnderReadOnly(id: number): Promise<Where[]> {
    return this.kysely.transaction().execute(async (trx) => {
      await kyselyInsert(trx, id);
      return [await kyselyWhere(trx), await kyselyWhere(trx)];
    });
  }

  @Transactional()
  async drizzleInside(outerId: number, innerId: number, nestedId: number): Promise<{ txids: string[] }> {
    await this.db.query(`INSERT INTO ${QB_TABLE} (id, note) VALUES ($1, 'outer')`, [outerId]);
    const outer = (await this.db.query<{ txid: string }>('SELECT txid_current()::text AS txid')).rows[0]!.txid;
    const inner = await this.drizzle.transaction(async (tx) => {
      await drizzleInsert(tx, innerId);
      await tx
        .transaction(async (nested) => {
          await drizzleInsert(nested, nestedId);
          throw new Planned('nested rollback');
        })
        .catch((err: unknown) => {
          if (!(err instanceof Planned)) throw err;
        });
      return drizzleTxid(tx);
    });
    return { txids: [outer, inner] };
  }

  @Transactional()
  async drizzleRollbackInside(outerId: number, innerId: number, laterId: number): Promise<void> {
    await this.db.query(`INSERT INTO ${QB_TABLE} (id, note) VALUES ($1, 'outer')`, [outerId]);
    await this.drizzle
      .transaction(async (tx) => {
        await drizzleInsert(tx, innerId);
        tx.rollback();
      })
      .catch((err: unknown) => {
        if ((err as Error).name !== 'TransactionRollbackError' && (err as Error).constructor?.name !== 'TransactionRollbackError') throw err;
      });
    await drizzleInsert(this.drizzle, laterId);
  }
}

// The lag monitor is slowed down so that "clients in use" counts only the builders' clients.
@Module({ imports: [PoolModule.forRoot(routingOptions(APP, { routing: { lagCheckIntervalMs: 60_000 } }))], providers: [...queryBuilderProviders, QbTransactions] })
class QbTransactionsModule {}

let app: INestApplication;
let db: DatabaseService;
let kysely: QbKysely;
let drizzle: QbDrizzle;
let service: QbTransactions;

const inUse = () => db.routedPool.totalCount - db.routedPool.idleCount;

beforeAll(async () => {
  await adminQuery('primary', `DROP TABLE IF EXISTS ${QB_TABLE}; CREATE TABLE ${QB_TABLE} (id int PRIMARY KEY, note text NOT NULL)`, [], { as: 'app' });
  await adminQuery('primary', `INSERT INTO ${QB_TABLE} (id, note) VALUES ($1, 'seed')`, [SEED_ID], { as: 'app' });
  await Promise.all([waitForReplay('replica1'), waitForReplay('replica2')]);
  const moduleRef = await Test.createTestingModule({ imports: [QbTransactionsModule] }).compile();
  app = moduleRef.createNestApplication({ logger: false });
  await app.init();
  db = app.get(DatabaseService);
  kysely = app.get(KYSELY);
  drizzle = app.get(DRIZZLE);
  service = app.get(QbTransactions);
}, 30_000);

afterAll(async () => {
  await app?.close();
  await expectNoSessionsLeft(APP);
  await adminQuery('primary', `DROP TABLE IF EXISTS ${QB_TABLE}`, [], { as: 'app' });
}, 30_000);

describe('outside a library transaction: the builder runs its own, on one primary client', () => {
  it('kysely.transaction().execute() commits on one primary backend in one transaction, holding the client until it is done', async () => {
    const [a, b] = [newId(), newId()];
    const before = (await db.query<{ txid: string }>('SELECT txid_current()::text AS txid')).rows[0]!.txid;
    const seen = await kysely.transaction().execute(async (trx) => {
      await kyselyInsert(trx, a);
      const first = await kyselyWhere(trx);
      const txids = [await kyselyTxid(trx), await kyselyTxid(trx)];
      await kyselyInsert(trx, b);
      const held = inUse();
      expect(await present([a, b])).toEqual([]);
      return { first, second: await kyselyWhere(trx), txids, held };
    });
    expect([seen.first.node, seen.second.node]).toEqual(['primary', 'primary']);
    expect(seen.first.pid).toBe(seen.second.pid);
    expect(new Set(seen.txids).size).toBe(1);
    expect(seen.txids[0]).not.toBe(before);
    expect(seen.held).toBeGreaterThanOrEqual(1);
    expect(await present([a, b])).toEqual([a, b]);
    expect(inUse()).toBe(0);
  });

  it('kysely.transaction().execute() rolls back when its callback throws, and rethrows', async () => {
    const id = newId();
    await expect(
      kysely.transaction().execute(async (trx) => {
        await kyselyInsert(trx, id);
        throw new Planned('rollback');
      }),
    ).rejects.toBeInstanceOf(Planned);
    expect(await present([id])).toEqual([]);
    expect(inUse()).toBe(0);
  });

  it('a builder transaction started under @ReadOnly() runs on the primary (it may write)', async () => {
    const id = newId();
    const wheres = await service.kyselyOwnUnderReadOnly(id);
    expect(wheres.map((w) => [w.node, w.recovery])).toEqual([
      ['primary', false],
      ['primary', false],
    ]);
    expect(wheres[0]!.pid).toBe(wheres[1]!.pid);
    expect(await present([id])).toEqual([id]);
  });

  it('drizzle.transaction() commits on one primary backend, rolls back on tx.rollback(), and its nested transaction is a savepoint', async () => {
    const [a, b, nested, c] = [newId(), newId(), newId(), newId()];
    const wheres = await drizzle.transaction(async (tx) => {
      await drizzleInsert(tx, a);
      await tx
        .transaction(async (inner) => {
          await drizzleInsert(inner, nested);
          throw new Planned('nested rollback');
        })
        .catch((err: unknown) => {
          if (!(err instanceof Planned)) throw err;
        });
      await drizzleInsert(tx, b);
      const txids = new Set([await drizzleTxid(tx), await drizzleTxid(tx)]);
      expect(txids.size).toBe(1);
      return [await drizzleWhere(tx), await drizzleWhere(tx)];
    });
    expect(wheres.map((w) => w.node)).toEqual(['primary', 'primary']);
    expect(wheres[0]!.pid).toBe(wheres[1]!.pid);
    expect(await present([a, b, nested])).toEqual([a, b]);

    await expect(
      drizzle.transaction(async (tx) => {
        await drizzleInsert(tx, c);
        tx.rollback();
      }),
    ).rejects.toThrow(/rollback/i);
    expect(await present([c])).toEqual([]);
    expect(inUse()).toBe(0);
  });
});

describe('inside db.transaction() / @Transactional(): the builder joins it through a savepoint', () => {
  it('kysely.transaction() shares the outer txid_current(); both parts commit with the outer transaction', async () => {
    const [outer, inner] = [newId(), newId()];
    const txids = await db.transaction(async () => {
      await db.query(`INSERT INTO ${QB_TABLE} (id, note) VALUES ($1, 'outer')`, [outer]);
      const innerTxid = await kysely.transaction().execute(async (trx) => {
        await kyselyInsert(trx, inner);
        return kyselyTxid(trx);
      });
      // The builder's COMMIT did not commit the library transaction.
      expect(await present([outer, inner])).toEqual([]);
      return [(await db.query<{ txid: string }>('SELECT txid_current()::text AS txid')).rows[0]!.txid, innerTxid];
    });
    expect(new Set(txids).size).toBe(1);
    expect(await present([outer, inner])).toEqual([outer, inner]);
  });

  it('a kysely transaction that throws rolls back only its own part; the outer transaction goes on and commits', async () => {
    const [outer, inner, later] = [newId(), newId(), newId()];
    await db.transaction(async () => {
      await db.query(`INSERT INTO ${QB_TABLE} (id, note) VALUES ($1, 'outer')`, [outer]);
      await expect(
        kysely.transaction().execute(async (trx) => {
          await kyselyInsert(trx, inner);
          throw new Planned('inner rollback');
        }),
      ).rejects.toBeInstanceOf(Planned);
      await kyselyInsert(kysely, later);
    });
    expect(await present([outer, inner, later])).toEqual([outer, later]);
  });

  it('the outer rollback undoes a kysely transaction that had committed inside it', async () => {
    const [outer, inner] = [newId(), newId()];
    await expect(
      db.transaction(async () => {
        await db.query(`INSERT INTO ${QB_TABLE} (id, note) VALUES ($1, 'outer')`, [outer]);
        await kysely.transaction().execute((trx) => kyselyInsert(trx, inner));
        throw new Planned('outer rollback');
      }),
    ).rejects.toBeInstanceOf(Planned);
    expect(await present([outer, inner])).toEqual([]);
  });

  it('a kysely transaction whose statement failed (error swallowed) reports the rollback as PostgreSQL would, and the outer one goes on', async () => {
    const [outer, inner, later] = [newId(), newId(), newId()];
    await db.transaction(async () => {
      await db.query(`INSERT INTO ${QB_TABLE} (id, note) VALUES ($1, 'outer')`, [outer]);
      await expect(
        kysely.transaction().execute(async (trx) => {
          await kyselyInsert(trx, inner);
          await kyselyInsert(trx, outer).catch(() => undefined); // duplicate key: the transaction is aborted
        }),
      ).rejects.toBeInstanceOf(AbortedTransactionError);
      await db.query(`INSERT INTO ${QB_TABLE} (id, note) VALUES ($1, 'later')`, [later]);
    });
    expect(await present([outer, inner, later])).toEqual([outer, later]);
  });

  it('drizzle.transaction() inside @Transactional() shares its txid; its nested savepoint rolls back alone; all commit together', async () => {
    const [outer, inner, nested] = [newId(), newId(), newId()];
    const { txids } = await service.drizzleInside(outer, inner, nested);
    expect(new Set(txids).size).toBe(1);
    expect(await present([outer, inner, nested])).toEqual([outer, inner]);
  });

  it('tx.rollback() of a drizzle transaction inside @Transactional() undoes only its part', async () => {
    const [outer, inner, later] = [newId(), newId(), newId()];
    await service.drizzleRollbackInside(outer, inner, later);
    expect(await present([outer, inner, later])).toEqual([outer, later]);
  });

  it('a COMMIT on a client that did not open BEGIN, or on routedPool.query, is refused instead of committing the library transaction', async () => {
    const id = newId();
    await expect(
      db.transaction(async () => {
        await db.query(`INSERT INTO ${QB_TABLE} (id, note) VALUES ($1, 'outer')`, [id]);
        const client = await db.routedPool.connect();
        try {
          await expect(client.query('COMMIT')).rejects.toThrow(PoolError);
          await expect(client.query('COMMIT')).rejects.toThrow(/did not open with BEGIN; nothing was committed/);
          // db.routedPool.query (Drizzle wraps the error it got in a DrizzleQueryError).
          const refused = await drizzle.execute(dsql`COMMIT`).then(
            () => undefined,
            (err: unknown) => (err as { cause?: unknown }).cause,
          );
          expect(refused).toBeInstanceOf(PoolError);
        } finally {
          client.release();
        }
        throw new Planned('outer rollback');
      }),
    ).rejects.toThrow('outer rollback');
    expect(await present([id])).toEqual([]);
  });
});
