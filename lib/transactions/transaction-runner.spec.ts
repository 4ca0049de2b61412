import type pg from 'pg';
import type { PoolClient } from 'pg';
import { FakeClient } from '../../test/support/fake-pg-client.js';
import { lend } from '../pool/lent-client.js';
import type { NodePool } from '../pool/node-pool.js';
import { PooledConnection } from '../pool/pooled-connection.js';
import { sendAsync } from '../pool/statement-deadline.js';
import { TransactionEndedError, TransactionOptionsConflictError, TransactionRolledBackError } from '../pool.exceptions.js';
import type { TransactionHandle } from './pinned-transaction.js';
import { TransactionRunner } from './transaction-runner.js';

// The transaction lifecycle on a fake client that answers like PostgreSQL: which statements reach
// the connection (BEGIN, COMMIT or ROLLBACK), what the transaction resolves or rejects with, and
// which error the client is given back with, on the handle the node pool lends. The real-cluster behaviour is in
// test/module/transactions-lifecycle.e2e-spec.ts.

const divisionByZero = () => Object.assign(new Error('division by zero'), { code: '22012' });
const refused = () => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9'), { code: 'ECONNREFUSED' });

/** A transaction's client as the node pool lends it: the one lent handle over a pooled connection of a fake pg client. */
function setup() {
  FakeClient.reset();
  FakeClient.failOn = /^SELECT 1\/0$/;
  FakeClient.failWith = divisionByZero;
  const conn = new PooledConnection({}, FakeClient as unknown as typeof pg.Client, 0, () => undefined);
  const client = conn.client as unknown as FakeClient;
  const handle = lend(conn, { database: 'default', name: 'primary', giveBackLent: () => undefined });
  const released: unknown[][] = [];
  const node = {
    name: 'primary',
    counters: { routedWrites: 0 },
    begin: (sql: string) => handle.query(sql).then(() => handle),
    // As NodePool.run: on the connection, past the handle's gate.
    run: (_c: PoolClient, text: string) => sendAsync(conn, text, undefined),
    release: (...args: unknown[]) => released.push(args),
  } as unknown as NodePool;
  const runner = new TransactionRunner({ name: 'default', beginOnWriter: (begin) => begin(node).then((c) => ({ node, client: c })), writeFailed: () => undefined, options: { routing: { consistency: 'read-your-writes' } } });
  return { client, handle, released, runner };
}

const outcome = (p: Promise<unknown>) => p.then(() => 'resolved', (err: unknown) => err);

describe('TransactionRunner', () => {
  it('commits when every statement succeeded', async () => {
    const { client, handle, released, runner } = setup();
    await expect(runner.run((tx) => tx.query('INSERT 1').then(() => 'ok'))).resolves.toBe('ok');
    expect(client.sent).toEqual(['BEGIN', 'INSERT 1', 'COMMIT']);
    expect(released).toHaveLength(1);
    expect(released[0]![0]).toBe(handle);
    expect(released[0]![1]).toBeUndefined();
  });

  it('sends ROLLBACK, not COMMIT, for an aborted transaction and rejects with the statement error as cause', async () => {
    const { client, handle, released, runner } = setup();
    const err = await outcome(
      runner.run(async (tx) => {
        await tx.query('INSERT 1');
        await tx.query('SELECT 1/0').catch(() => undefined);
      }),
    );
    expect(err).toBeInstanceOf(TransactionRolledBackError);
    expect(err).toMatchObject({ sqlState: '22012', cause: { code: '22012' } });
    expect(client.sent).toEqual(['BEGIN', 'INSERT 1', 'SELECT 1/0', 'ROLLBACK']);
    expect(released).toHaveLength(1);
    expect(released[0]![0]).toBe(handle);
    expect(released[0]![1]).toBeUndefined();
  });

  it('treats a COMMIT answered with the ROLLBACK tag as a rollback', async () => {
    const { client, runner } = setup();
    client.commitTag = 'ROLLBACK';
    const err = await outcome(runner.run((tx) => tx.query('INSERT 1')));
    expect(err).toBeInstanceOf(TransactionRolledBackError);
    expect((err as Error).message).toContain('the server answered COMMIT with ROLLBACK');
  });

  it('counts an error caught on the guarded tx.client too', async () => {
    const { runner } = setup();
    const err = await outcome(runner.run((tx) => tx.client.query('SELECT 1/0').catch(() => undefined)));
    expect(err).toMatchObject({ name: 'TransactionRolledBackError', sqlState: '22012' });
  });

  it('makes a transaction rollback-only when a joined call threw, even if the caller caught it', async () => {
    const { client, runner } = setup();
    const inner = new Error('inner rule');
    const err = await outcome(
      runner.run(async () => {
        await runner.run(() => Promise.reject(inner)).catch(() => undefined);
      }),
    );
    expect(err).toBeInstanceOf(TransactionRolledBackError);
    expect((err as Error).cause).toBe(inner);
    expect(client.sent).toEqual(['BEGIN', 'ROLLBACK']);
  });

  it('refuses every statement after the end; tx.client.release() does nothing', async () => {
    const { client, runner } = setup();
    let kept: TransactionHandle | undefined;
    await runner.run((tx) => {
      kept = tx;
    });
    kept!.client.release();
    await expect(kept!.query('INSERT late')).rejects.toBeInstanceOf(TransactionEndedError);
    await expect(kept!.client.query('INSERT late')).rejects.toMatchObject({ outcome: 'committed' });
    const viaCallback = await new Promise((resolve) => (kept!.client.query as (t: string, cb: (e: unknown) => void) => void)('INSERT late', resolve));
    expect(viaCallback).toBeInstanceOf(TransactionEndedError);
    expect(client.sent).toEqual(['BEGIN', 'COMMIT']);
  });

  it('rolls back and gives a healthy client back after a connection-class error the callback itself threw', async () => {
    const { client, handle, released, runner } = setup();
    const err = refused();
    await expect(runner.run(() => Promise.reject(err))).rejects.toBe(err);
    expect(client.sent).toEqual(['BEGIN', 'ROLLBACK']);
    expect(released).toHaveLength(1);
    expect(released[0]![0]).toBe(handle);
    expect(released[0]![1]).toBeUndefined();
  });

  it('skips ROLLBACK and gives the client back with its own failure when the client failed', async () => {
    const { client, handle, released, runner } = setup();
    const broken = Object.assign(new Error('Connection terminated unexpectedly'), {});
    const err = await outcome(
      runner.run(() => {
        client.emit('error', broken);
        throw new Error('wrapped by the caller');
      }),
    );
    expect((err as Error).message).toBe('wrapped by the caller');
    expect(client.sent).toEqual(['BEGIN']);
    expect(released[0]![0]).toBe(handle);
    expect(released[0]![1]).toBeInstanceOf(Error);
  });

  it('refuses a joined call with other options', async () => {
    const { runner } = setup();
    const err = await outcome(runner.run(() => runner.run(() => undefined, { isolationLevel: 'serializable' }), { isolationLevel: 'read committed' }));
    expect(err).toBeInstanceOf(TransactionOptionsConflictError);
    expect(err).toMatchObject({ option: 'isolationLevel', requested: 'serializable', current: 'read committed' });
  });
});
