import { Injectable } from '@nestjs/common';
import { Test, type TestingModule } from '@nestjs/testing';
import { jest } from '@jest/globals';
import {
  DatabaseService,
  PoolModule,
  Transactional,
  TransactionEndedError,
  TransactionInProgressError,
  TransactionOptionsConflictError,
  TransactionRolledBackError,
} from 'nestjs-pg-pools';
import { adminQuery } from '../support/cluster.js';
import { expectNoSessionsLeft, sessionCounts } from '../support/sessions.js';
import { sleep, waitFor } from '../support/wait.js';
import { routingOptions } from '../support/routing.support.js';

// Transactions that cannot lie, on the real primary + 2 replicas: a transaction the server rolled
// back (a caught SQL error, a joined inner call that failed) never resolves; once a transaction
// has ended, nothing that still holds it (a sibling promise, a timer, tx.client, the handle)
// reaches the released connection; consistencyToken() refuses to answer inside an open
// transaction and covers the commit after it; a connection-class error thrown by the caller's own
// code does not destroy the pool's healthy connection; a joined transaction with other options is
// refused. Every check reads what the user sees: rows as another session sees them, error types and
// messages, and the sessions in pg_stat_activity.

jest.setTimeout(20_000);

const APP = 'e2e-tx-lifecycle';
const TABLE = 'tx_lifecycle_e2e';

@Injectable()
class Orders {
  constructor(readonly db: DatabaseService) {}

  @Transactional()
  async placeSwallowingInner(id: number): Promise<string> {
    await this.db.query(`INSERT INTO ${TABLE} (id) VALUES ($1)`, [id]);
    await this.auditSwallowing();
    return 'placed';
  }

  /** Joins the caller's transaction and hides its own SQL error: the transaction is aborted. */
  @Transactional()
  async auditSwallowing(): Promise<void> {
    await this.db.query('SELECT 1/0').catch(() => undefined);
  }

  @Transactional()
  async placeCatchingInner(id: number): Promise<string> {
    await this.db.query(`INSERT INTO ${TABLE} (id) VALUES ($1)`, [id]);
    await this.failingInner(id + 1).catch(() => undefined);
    return 'placed';
  }

  @Transactional()
  async failingInner(id: number): Promise<void> {
    await this.db.query(`INSERT INTO ${TABLE} (id) VALUES ($1)`, [id]);
    throw new Error('inner business rule failed');
  }

  @Transactional()
  async outerDefault(): Promise<void> {
    await this.innerSerializable();
  }

  @Transactional({ isolationLevel: 'serializable' })
  async innerSerializable(): Promise<void> {
    await this.db.query('SELECT 1');
  }
}

let app: TestingModule;
let db: DatabaseService;
let orders: Orders;

beforeAll(async () => {
  await adminQuery('primary', `DROP TABLE IF EXISTS ${TABLE}; CREATE TABLE ${TABLE} (id int PRIMARY KEY)`, [], { as: 'app' });
  app = await Test.createTestingModule({
    imports: [PoolModule.forRoot(routingOptions(APP, { min: 1, max: 2 }))],
    providers: [Orders],
  }).compile();
  app.useLogger(false);
  await app.init();
  db = app.get(DatabaseService);
  orders = app.get(Orders);
}, 20_000);

beforeEach(async () => {
  await adminQuery('primary', `TRUNCATE ${TABLE}`, [], { as: 'app' });
});

afterAll(async () => {
  await app?.close();
  await expectNoSessionsLeft(APP);
  await adminQuery('primary', `DROP TABLE IF EXISTS ${TABLE}`, [], { as: 'app' });
});

/** Rows as another session sees them: only committed data. */
async function committedIds(): Promise<number[]> {
  return (await adminQuery<{ id: number }>('primary', `SELECT id FROM ${TABLE} ORDER BY id`)).map((r) => r.id);
}

/** Backend pids of this app's sessions on the primary. */
async function primaryPids(): Promise<number[]> {
  return (await adminQuery<{ pid: number }>('primary', 'SELECT pid FROM pg_stat_activity WHERE application_name = $1 ORDER BY pid', [APP])).map((r) => r.pid);
}

function settle<T>(promise: Promise<T>): Promise<unknown> {
  return promise.then(
    () => 'resolved',
    (err: unknown) => err,
  );
}

describe('a transaction the server rolled back never reports success', () => {
  it('rejects with TransactionRolledBackError when a caught SQL error aborted it, and keeps nothing', async () => {
    const outcome = await settle(
      db.transaction(async () => {
        await db.query(`INSERT INTO ${TABLE} (id) VALUES (1)`);
        await db.query('SELECT 1/0').catch(() => undefined);
        return 'done';
      }),
    );
    expect(outcome).toBeInstanceOf(TransactionRolledBackError);
    const err = outcome as TransactionRolledBackError;
    expect(err).toMatchObject({ code: 'TRANSACTION_ROLLED_BACK', sqlState: '22012', database: 'default' });
    expect((err.cause as { code?: string }).code).toBe('22012');
    expect(err.message).toMatch(/^Cannot commit the transaction on "default" because a statement in it failed \(22012: division by zero\)/);
    expect(err.message).toContain('Please make sure that');
    expect(await committedIds()).toEqual([]);
    expect((await sessionCounts(APP, { poolOnly: true })).primary).toBeLessThanOrEqual(2);
  });

  it('rejects @Transactional() when a joined inner call swallowed its SQL error', async () => {
    const outcome = await settle(orders.placeSwallowingInner(10));
    expect(outcome).toBeInstanceOf(TransactionRolledBackError);
    expect((outcome as TransactionRolledBackError).sqlState).toBe('22012');
    expect(await committedIds()).toEqual([]);
  });

  it('rolls back, and rejects, when a joined inner @Transactional() threw and the caller caught it (rollback-only)', async () => {
    const outcome = await settle(orders.placeCatchingInner(20));
    expect(outcome).toBeInstanceOf(TransactionRolledBackError);
    expect((outcome as Error).message).toContain('a joined inner transaction threw (inner business rule failed)');
    expect(((outcome as Error).cause as Error).message).toBe('inner business rule failed');
    expect(await committedIds()).toEqual([]);
  });

  it('still commits a transaction whose statements all succeeded', async () => {
    await expect(db.transaction(async (tx) => tx.query(`INSERT INTO ${TABLE} (id) VALUES (30)`).then(() => 'ok'))).resolves.toBe('ok');
    expect(await committedIds()).toEqual([30]);
  });
});

describe('nothing runs on a transaction after it ended', () => {
  it('rejects a sibling statement that outlives a rolled-back transaction: the INSERT never runs in autocommit', async () => {
    let sibling: Promise<unknown> | undefined;
    const failure = new Error('validation failed after 5ms');
    const outcome = await settle(
      db.transaction(async () => {
        sibling = settle(
          (async () => {
            await db.query('SELECT pg_sleep(0.05)');
            await db.query(`INSERT INTO ${TABLE} (id) VALUES (40)`);
          })(),
        );
        await Promise.all([sleep(5).then(() => Promise.reject(failure)), sibling]);
      }),
    );
    expect(outcome).toBe(failure);
    const late = await sibling;
    expect(late).toBeInstanceOf(TransactionEndedError);
    expect(late).toMatchObject({ code: 'TRANSACTION_ENDED', outcome: 'rolled back' });
    expect((late as Error).message).toMatch(/^Cannot run a statement in the transaction on "default" because the transaction has already rolled back; the statement was not sent\./);
    await sleep(50);
    expect(await committedIds()).toEqual([]);
  });

  it('rejects every way in after COMMIT: db.query, db.primary.query, withClient, tx.query and tx.client', async () => {
    let handle: { query(text: string): Promise<unknown>; client: { query(text: string): Promise<unknown> } } | undefined;
    let later: Promise<unknown[]> | undefined;
    await db.transaction(async (tx) => {
      handle = tx;
      await tx.query(`INSERT INTO ${TABLE} (id) VALUES (50)`);
      // Left running on purpose: a timer that fires after the transaction committed.
      later = new Promise((resolve) => {
        setTimeout(() => {
          void Promise.all([
            settle(db.query(`INSERT INTO ${TABLE} (id) VALUES (51)`)),
            settle(db.primary.query(`INSERT INTO ${TABLE} (id) VALUES (52)`)),
            settle(db.withClient((c) => c.query(`INSERT INTO ${TABLE} (id) VALUES (53)`))),
          ]).then(resolve);
        }, 20).unref();
      });
    });
    const direct = await Promise.all([settle(handle!.query(`INSERT INTO ${TABLE} (id) VALUES (54)`)), settle(handle!.client.query(`INSERT INTO ${TABLE} (id) VALUES (55)`))]);
    const fromTimer = await later!;
    for (const err of [...direct, ...fromTimer]) {
      expect(err).toBeInstanceOf(TransactionEndedError);
      expect(err).toMatchObject({ outcome: 'committed' });
    }
    expect(await committedIds()).toEqual([50]);
  });

  it('makes a nested db.transaction() that would join an ended one reject instead of opening a second transaction', async () => {
    let later: Promise<unknown> | undefined;
    await db.transaction(async () => {
      later = sleep(10).then(() => settle(db.transaction(() => db.query(`INSERT INTO ${TABLE} (id) VALUES (60)`))));
    });
    expect(await later).toBeInstanceOf(TransactionEndedError);
    expect(await committedIds()).toEqual([]);
  });
});

describe('consistencyToken() and transactions', () => {
  it('rejects inside an open transaction, and after it returns a token that covers the commit', async () => {
    await db.scope(async () => {
      let beforeCommit = '';
      const inside = await settle(
        db.transaction(async () => {
          await db.query(`INSERT INTO ${TABLE} (id) VALUES (70)`);
          beforeCommit = (await db.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn')).rows[0]!.lsn;
          await db.consistencyToken();
        }),
      );
      expect(inside).toBeInstanceOf(TransactionInProgressError);
      expect((inside as Error).message).toMatch(/^Cannot give a consistency token for "default" because it was asked for inside an open transaction/);

      await db.transaction(() => db.query(`INSERT INTO ${TABLE} (id) VALUES (71)`));
      const token = await db.consistencyToken();
      expect(token).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
      const [{ after }] = (await adminQuery<{ after: boolean }>('primary', 'SELECT $1::pg_lsn > $2::pg_lsn AS after', [token, beforeCommit])) as [{ after: boolean }];
      expect(after).toBe(true);
      // A replica that has replayed the token has the committed row.
      for (const replica of ['replica1', 'replica2'] as const) {
        await waitFor(`${replica} to replay ${token}`, async () => (await adminQuery<{ ok: boolean }>(replica, 'SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS ok', [token]))[0]!.ok, 10_000);
        expect((await adminQuery<{ id: number }>(replica, `SELECT id FROM ${TABLE} WHERE id = 71`)).map((r) => r.id)).toEqual([71]);
      }
    });
  });
});

describe('errors thrown by the caller’s own code', () => {
  const refused = () => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9'), { code: 'ECONNREFUSED' });
  const otherDatabaseShutdown = () => Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01', severity: 'FATAL' });

  it('keep the pool’s healthy connection in withClient: same session before and after, nothing evicted', async () => {
    await db.query('SELECT 1');
    const before = await primaryPids();
    let lent = 0;
    await expect(
      db.withClient(async (c) => {
        lent = (await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
        throw refused();
      }),
    ).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    await expect(
      db.withClient(async () => {
        throw otherDatabaseShutdown();
      }),
    ).rejects.toMatchObject({ code: '57P01' });
    const again = await db.withClient(async (c) => (await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid);
    expect(again).toBe(lent);
    // Every session is still there (the lag monitor may have opened one more meanwhile).
    expect(await primaryPids()).toEqual(expect.arrayContaining(before));
  });

  it('keep the connection in a transaction: the transaction rolls back, the error passes through, the session lives on', async () => {
    await db.query('SELECT 1');
    const before = await primaryPids();
    let pinned = 0;
    const outcome = await settle(
      db.transaction(async (tx) => {
        await tx.query(`INSERT INTO ${TABLE} (id) VALUES (80)`);
        pinned = (await tx.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
        throw otherDatabaseShutdown();
      }),
    );
    expect(outcome).toMatchObject({ code: '57P01', message: 'terminating connection due to administrator command' });
    expect(await committedIds()).toEqual([]);
    const again = await db.withClient(async (c) => (await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid);
    expect(again).toBe(pinned);
    // Every session is still there (the lag monitor may have opened one more meanwhile).
    expect(await primaryPids()).toEqual(expect.arrayContaining(before));
  });
});

describe('a joined transaction with other options', () => {
  it('is refused with TransactionOptionsConflictError instead of silently running with the outer options', async () => {
    const outcome = await settle(orders.outerDefault());
    expect(outcome).toBeInstanceOf(TransactionOptionsConflictError);
    expect(outcome).toMatchObject({ code: 'TRANSACTION_OPTIONS_CONFLICT', option: 'isolationLevel', requested: 'serializable', current: undefined });
    expect((outcome as Error).message).toMatch(/^Cannot join the transaction on "default" with isolationLevel "serializable" because the enclosing transaction was opened with no isolationLevel/);

    const readOnly = await settle(db.transaction(() => db.transaction(() => db.query('SELECT 1'), { readOnly: false }), { readOnly: true }));
    expect(readOnly).toMatchObject({ name: 'TransactionOptionsConflictError', option: 'readOnly', requested: false, current: true });
    // Options equal to the outer ones, or none, join as before.
    await expect(db.transaction(() => db.transaction(() => db.query('SELECT 1 AS ok'), { isolationLevel: 'repeatable read' }), { isolationLevel: 'repeatable read' })).resolves.toMatchObject({ rows: [{ ok: 1 }] });
  });
});

