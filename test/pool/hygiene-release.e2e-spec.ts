import { startApp, type TestApp } from '../support/app.js';
import { adminQuery, nodeOptions } from '../support/cluster.js';
import { expectNoSessionsLeft, poolSessions } from '../support/sessions.js';
import { waitFor } from '../support/wait.js';

// Release hygiene with a one-connection pool, so "the same connection" is checkable by backend
// pid: a client given back inside an open or aborted transaction is rolled back before anyone
// else gets it; ordinary SQL errors keep the connection; connection-class errors replace it.

const APP = 'e2e-hygiene-release';
const TABLE = 'hygiene_release_items';

interface SessionFacts {
  pid: number;
  xid: string | null;
  fresh: boolean;
}

describe('release hygiene (real primary)', () => {
  let t: TestApp;

  const facts = async (): Promise<SessionFacts> =>
    (await t.db.query<SessionFacts>('SELECT pg_backend_pid() AS pid, pg_current_xact_id_if_assigned()::text AS xid, now() = statement_timestamp() AS fresh')).rows[0]!;

  const count = async (tag: string): Promise<number> =>
    Number((await adminQuery<{ n: string }>('primary', `SELECT count(*) AS n FROM ${TABLE} WHERE tag = $1`, [tag]))[0]!.n);

  beforeAll(async () => {
    await adminQuery('primary', `CREATE TABLE IF NOT EXISTS ${TABLE} (id serial PRIMARY KEY, tag text UNIQUE)`, [], { as: 'app' });
    await adminQuery('primary', `DELETE FROM ${TABLE}`, [], { as: 'app' });
    t = await startApp({ preset: 'test', applicationName: APP, primary: nodeOptions('primary'), min: 1, max: 1 });
  }, 30_000);

  afterAll(async () => {
    await t?.close();
    await expectNoSessionsLeft(APP);
  }, 30_000);

  it('rolls back a transaction left open by the borrower before the connection is reused', async () => {
    const { pid } = await facts();
    const leftOpen = await t.db.withClient(async (client) => {
      await client.query('BEGIN');
      await client.query(`INSERT INTO ${TABLE} (tag) VALUES ('left-open')`);
      return (await client.query<{ xid: string }>('SELECT pg_current_xact_id()::text AS xid')).rows[0]!.xid;
    });
    expect(leftOpen).toMatch(/^\d+$/);
    const after = await facts();
    expect(after).toEqual({ pid, xid: null, fresh: true });
    expect(await count('left-open')).toBe(0);
    expect(t.cluster.primary.counters.rollbacksOnRelease).toBe(1);
    const server = await poolSessions('primary', APP);
    expect(server.map((s) => s.state)).toEqual(['idle']);
  });

  it('rolls back an aborted transaction (the caller swallowed the error) before reuse', async () => {
    const { pid } = await facts();
    await t.db.withClient(async (client) => {
      await client.query('BEGIN');
      await client.query(`INSERT INTO ${TABLE} (tag) VALUES ('aborted')`);
      await expect(client.query('SELECT 1 / 0')).rejects.toMatchObject({ code: '22012' });
    });
    expect(await facts()).toEqual({ pid, xid: null, fresh: true });
    expect(await count('aborted')).toBe(0);
  });

  it('rolls back when the borrower throws inside its transaction, and the error reaches the caller', async () => {
    const { pid } = await facts();
    await expect(
      t.db.withClient(async (client) => {
        await client.query('BEGIN');
        await client.query(`INSERT INTO ${TABLE} (tag) VALUES ('thrown')`);
        throw new Error('business rule failed');
      }),
    ).rejects.toThrow('business rule failed');
    expect(await facts()).toEqual({ pid, xid: null, fresh: true });
    expect(await count('thrown')).toBe(0);
  });

  it('keeps the connection after syntax (42601), unique (23505) and division-by-zero (22012) errors', async () => {
    const { pid } = await facts();
    await t.db.query(`INSERT INTO ${TABLE} (tag) VALUES ('unique-once')`);
    await expect(t.db.query('SELEC 1')).rejects.toMatchObject({ code: '42601' });
    await expect(t.db.query(`INSERT INTO ${TABLE} (tag) VALUES ('unique-once')`)).rejects.toMatchObject({ code: '23505' });
    await expect(t.db.query('SELECT 1 / 0')).rejects.toMatchObject({ code: '22012' });
    await expect(t.db.transaction((tx) => tx.query('SELECT 1 / 0'))).rejects.toMatchObject({ code: '22012' });
    expect(await facts()).toEqual({ pid, xid: null, fresh: true });
    expect(t.cluster.primary.counters.created).toBe(1);
  });

  it('replaces the connection after a connection-class error (the session was terminated)', async () => {
    const { pid } = await facts();
    await expect(t.db.withClient((client) => client.query('SELECT pg_terminate_backend(pg_backend_pid())'))).rejects.toMatchObject({ code: '57P01' });
    const after = await facts();
    expect(after.pid).not.toBe(pid);
    expect(after).toMatchObject({ xid: null, fresh: true });
    await waitFor('the old session gone', async () => !(await poolSessions('primary', APP)).some((s) => s.pid === pid), 3000);
    expect(t.cluster.primary.counters.connectionErrors).toBeGreaterThanOrEqual(1);
  });

  it('keeps the connection when the borrower throws a connection-class error of its own (not from this client)', async () => {
    const { pid } = await facts();
    const created = t.cluster.primary.counters.created;
    const own = Object.assign(new Error('upstream service reset the connection'), { code: 'ECONNRESET' });
    await expect(t.db.withClient(async (client) => {
      await client.query('SELECT 1');
      throw own;
    })).rejects.toBe(own);
    expect((await facts()).pid).toBe(pid);
    expect(t.cluster.primary.counters.created).toBe(created);
  });

  it('a client released by hand inside withClient is dead: the library\'s own release cannot hand back the next borrower\'s checkout', async () => {
    const { pid } = await facts();
    let lent: { query(text: string): Promise<unknown>; release(): void } | undefined;
    let secondHolds = false;
    let releaseSecond!: () => void;
    const secondMayGo = new Promise<void>((resolve) => (releaseSecond = resolve));
    const first = t.db.withClient(async (client) => {
      lent = client;
      client.release();
      expect(() => client.release()).toThrow(/already been released/);
      await expect(client.query('SELECT 1')).rejects.toThrow(/already given back/);
      return 'first';
    });
    // A second borrower gets the one connection the first gave back by hand, and holds it.
    const second = t.db.withClient(async (client) => {
      secondHolds = true;
      const row = (await client.query('SELECT pg_backend_pid() AS pid')) as { rows: Array<{ pid: number }> };
      await secondMayGo;
      return row.rows[0]!.pid;
    });
    expect(await first).toBe('first');
    await waitFor('the second borrower holds the connection', () => secondHolds, 3000);
    // withClient's own release of the first client ran: the connection must still be the second's.
    expect(t.db.primary.pool.idleCount).toBe(0);
    expect(t.db.primary.pool.totalCount - t.db.primary.pool.idleCount).toBe(1);
    let thirdDone = false;
    const third = t.db.query<{ pid: number }>('SELECT pg_backend_pid() AS pid').then((r) => {
      thirdDone = true;
      return r.rows[0]!.pid;
    });
    await new Promise((r) => setTimeout(r, 150));
    expect(thirdDone).toBe(false);
    expect(t.db.primary.pool.waitingCount).toBe(1);
    releaseSecond();
    expect(await second).toBe(pid);
    expect(await third).toBe(pid);
    expect(() => (lent as unknown as { on(e: string, f: () => void): void }).on('x', () => undefined)).toThrow(/already given back/);
  });
});
