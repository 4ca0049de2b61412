import type { PoolClient, QueryResult } from 'pg';
import type { PoolCluster } from '../core/pool-cluster.js';
import { PoolError } from '../pool.exceptions.js';
import { RoutedClient } from './routed-client.js';
import { runInTransaction, type ScopedTransaction } from './routing-context.js';

// The statement rules of db.routedPool's client against a stand-in cluster that records what
// it is asked to run (the real routing is covered by test/query-builders-*.e2e-spec.ts).

class FakeCluster {
  readonly name = 'default';
  readonly primary = { config: { pgbouncer: false, statementTimeoutMs: 0 } };
  readonly ran: string[] = [];
  readonly held: string[] = [];
  readonly given: unknown[] = [];
  failNext: { text: string; code: string } | undefined;

  query(text: string | { text: string }): Promise<QueryResult> {
    const sql = typeof text === 'string' ? text : text.text;
    this.ran.push(sql);
    if (this.failNext !== undefined && sql.startsWith(this.failNext.text)) {
      const err = Object.assign(new Error('current transaction is aborted'), { code: this.failNext.code });
      this.failNext = undefined;
      return Promise.reject(err);
    }
    return Promise.resolve({ command: sql.split(' ')[0]!.toUpperCase(), rows: [], rowCount: 0, oid: 0, fields: [] });
  }

  withClient<T>(fn: (client: PoolClient) => Promise<T> | T, readOnly?: boolean): Promise<T> {
    const client = {
      query: (text: string) => {
        this.held.push(text);
        return Promise.resolve({ command: text.split(' ')[0]!.toUpperCase(), rows: [] });
      },
      on: () => undefined,
      off: () => undefined,
    } as unknown as PoolClient;
    this.held.push(`<taken readOnly=${String(readOnly)}>`);
    return Promise.resolve(fn(client)).then(
      (value) => {
        this.given.push('ok');
        return value;
      },
      (err: unknown) => {
        this.given.push(err);
        throw err;
      },
    );
  }
}

const tx = { database: 'default', state: 'open' } as unknown as ScopedTransaction;

function setup() {
  const cluster = new FakeCluster();
  const recycled: RoutedClient[] = [];
  const client = () => new RoutedClient(cluster as unknown as PoolCluster, (c) => recycled.push(c)) as unknown as PoolClient & RoutedClient;
  return { cluster, recycled, client };
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

describe('RoutedClient inside a library transaction', () => {
  it("turns the builder's BEGIN / COMMIT into a savepoint and its release, reporting the commands the builder sent", async () => {
    const { cluster, client } = setup();
    await runInTransaction(tx, async () => {
      const c = client();
      expect((await c.query('begin')).command).toBe('BEGIN');
      await c.query('insert into t values (1)');
      expect((await c.query('commit')).command).toBe('COMMIT');
      c.release();
    });
    const sp = cluster.ran[0]!.slice('SAVEPOINT '.length);
    expect(sp).toMatch(/^pgpools_qb_\d+$/);
    expect(cluster.ran).toEqual([`SAVEPOINT ${sp}`, 'insert into t values (1)', `RELEASE SAVEPOINT ${sp}`]);
  });

  it('turns ROLLBACK into ROLLBACK TO SAVEPOINT + RELEASE SAVEPOINT; nested BEGINs nest savepoints', async () => {
    const { cluster, client } = setup();
    await runInTransaction(tx, async () => {
      const c = client();
      await c.query('BEGIN');
      await c.query({ text: 'start transaction isolation level serializable' });
      expect((await c.query('ROLLBACK')).command).toBe('ROLLBACK');
      expect((await c.query('COMMIT')).command).toBe('COMMIT');
      c.release();
    });
    const [outer, inner] = [cluster.ran[0]!.slice(10), cluster.ran[1]!.slice(10)];
    expect(outer).not.toBe(inner);
    expect(cluster.ran).toEqual([
      `SAVEPOINT ${outer}`,
      `SAVEPOINT ${inner}`,
      `ROLLBACK TO SAVEPOINT ${inner}`,
      `RELEASE SAVEPOINT ${inner}`,
      `RELEASE SAVEPOINT ${outer}`,
    ]);
  });

  it('a COMMIT on an aborted transaction rolls back to the savepoint and answers ROLLBACK, as PostgreSQL does', async () => {
    const { cluster, client } = setup();
    await runInTransaction(tx, async () => {
      const c = client();
      await c.query('begin');
      cluster.failNext = { text: 'RELEASE SAVEPOINT', code: '25P02' };
      expect((await c.query('commit')).command).toBe('ROLLBACK');
      c.release();
    });
    expect(cluster.ran.slice(1).map((s) => s.replace(/pgpools_qb_\d+/, 'sp'))).toEqual(['RELEASE SAVEPOINT sp', 'ROLLBACK TO SAVEPOINT sp', 'RELEASE SAVEPOINT sp']);
  });

  it('refuses COMMIT / ROLLBACK without its own BEGIN, and COMMIT AND CHAIN, running nothing', async () => {
    const { cluster, client } = setup();
    await runInTransaction(tx, async () => {
      const c = client();
      await expect(c.query('COMMIT')).rejects.toThrow(PoolError);
      await expect(c.query('rollback')).rejects.toThrow(/did not open with BEGIN/);
      await c.query('begin');
      await expect(c.query('commit and chain')).rejects.toThrow(/"commit and chain"/);
      c.release();
    });
    expect(cluster.ran.filter((s) => !s.startsWith('SAVEPOINT') && !s.startsWith('ROLLBACK TO') && !s.startsWith('RELEASE'))).toEqual([]);
  });

  it('released with its transaction open, rolls back to its first savepoint', async () => {
    const { cluster, client } = setup();
    await runInTransaction(tx, async () => {
      const c = client();
      await c.query('begin');
      await c.query('begin');
      c.release();
      await settle();
    });
    const first = cluster.ran[0]!.slice(10);
    expect(cluster.ran.slice(2)).toEqual([`ROLLBACK TO SAVEPOINT ${first}`, `RELEASE SAVEPOINT ${first}`]);
  });
});

describe('RoutedClient outside a transaction', () => {
  it('routes plain statements one by one and holds nothing; release() recycles it, a second release() throws', async () => {
    const { cluster, recycled, client } = setup();
    const c = client();
    await c.query('select 1');
    await c.query('commit');
    expect(cluster.ran).toEqual(['select 1', 'commit']);
    expect(cluster.held).toEqual([]);
    c.release();
    expect(recycled).toEqual([c]);
    expect(() => c.release()).toThrow(/already been released/);
    await expect(c.query('select 1')).rejects.toThrow(/already released/);
  });

  it('BEGIN holds one primary client until release(); a session command holds one from the scope', async () => {
    const { cluster, recycled, client } = setup();
    const c = client();
    await c.query('BEGIN');
    await c.query('select 1');
    await c.query('COMMIT');
    c.release();
    await settle();
    expect(cluster.held).toEqual(['<taken readOnly=false>', 'BEGIN', 'select 1', 'COMMIT']);
    expect(cluster.given).toEqual(['ok']);
    expect(recycled).toEqual([]);

    const s = client();
    await s.query('SET search_path = app');
    s.release(true);
    await settle();
    expect(cluster.held.slice(4)).toEqual(['<taken readOnly=undefined>', 'SET search_path = app']);
    expect(cluster.given[1]).toMatchObject({ connectionError: true });
  });

  it('behind PgBouncer, sets the statement deadline with SET LOCAL in every builder transaction', async () => {
    const { cluster, client } = setup();
    Object.assign(cluster.primary.config, { pgbouncer: true, statementTimeoutMs: 1500 });
    const c = client();
    expect((await c.query('BEGIN')).command).toBe('BEGIN');
    await c.query('COMMIT');
    await c.query('begin');
    await c.query('ROLLBACK');
    c.release();
    const deadline = 'SET LOCAL statement_timeout = 1500';
    expect(cluster.held).toEqual(['<taken readOnly=false>', 'BEGIN', deadline, 'COMMIT', 'begin', deadline, 'ROLLBACK']);
  });

  it('supports the callback forms', async () => {
    const { client } = setup();
    const c = client();
    const res = await new Promise<QueryResult>((resolve, reject) => c.query('select 1', (err: Error | undefined, r: QueryResult) => (err ? reject(err) : resolve(r))));
    expect(res.command).toBe('SELECT');
    c.release();
  });
});
