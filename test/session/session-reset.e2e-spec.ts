import type { PoolClient } from 'pg';
import { startApp, type TestApp } from '../support/app.js';
import { adminQuery, clusterConfig, nodeOptions } from '../support/cluster.js';
import { waitForReplay } from '../support/routing.support.js';
import { waitForNoSessions } from '../support/sessions.js';

// What one borrower changes on a connection never reaches the next one: a pool of one connection
// (so "the next borrower" is the same backend, checked by pid), one scope after another, on the
// primary and on a replica. The library's own session settings come back after a reset, a reset
// costs nothing on a connection nobody touched, and `resetOnRelease: 'never'` leaves it all.

const APP = 'e2e-session-reset';
const APP_REPLICA = 'e2e-session-reset-replica';
const APP_NEVER = 'e2e-session-reset-never';
const APP_HOOKED = 'e2e-session-reset-hooked';

interface Session {
  pid: number;
  port: number;
  user: string;
  tenant: string;
  searchPath: string;
  statementTimeout: string;
  timeZone: string;
  readOnly: string;
  applicationName: string;
  channels: number;
  tempTables: number;
  advisoryLocks: number;
  sqlPrepared: number;
  cursors: number;
}

const SESSION_SQL = `SELECT pg_backend_pid() AS pid, inet_server_port() AS port, current_user AS "user",
  coalesce(current_setting('app.tenant_id', true), '') AS tenant,
  current_setting('search_path') AS "searchPath",
  current_setting('statement_timeout') AS "statementTimeout",
  current_setting('TimeZone') AS "timeZone",
  current_setting('default_transaction_read_only') AS "readOnly",
  current_setting('application_name') AS "applicationName",
  (SELECT count(*)::int FROM pg_listening_channels()) AS channels,
  (SELECT count(*)::int FROM pg_class WHERE relpersistence = 't' AND pg_table_is_visible(oid)) AS "tempTables",
  (SELECT count(*)::int FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()) AS "advisoryLocks",
  (SELECT count(*)::int FROM pg_prepared_statements WHERE from_sql) AS "sqlPrepared",
  (SELECT count(*)::int FROM pg_cursors) AS cursors`;

type Run = (text: string) => Promise<unknown>;

describe('session state does not cross a checkout', () => {
  let primary: TestApp;
  let replica: TestApp;
  let clean: Session;
  let cleanReplica: Session;

  const sessionOn = (t: TestApp, readOnly: boolean): Promise<Session> =>
    t.db.scope(async () => (await (readOnly ? t.db.replica.query<Session>(SESSION_SQL) : t.db.query<Session>(SESSION_SQL))).rows[0]!);

  beforeAll(async () => {
    await adminQuery('primary', 'GRANT pg_read_all_data TO app');
    await adminQuery('primary', 'CREATE SCHEMA IF NOT EXISTS tenant_b AUTHORIZATION app');
    await adminQuery('primary', 'CREATE TABLE IF NOT EXISTS session_reset_items (id int, name text)', [], { as: 'app' });
    // The replica cases use the role and the schema: on a new cluster they must have reached replica1 first.
    await waitForReplay('replica1');
    primary = await startApp({ preset: 'test', applicationName: APP, primary: nodeOptions('primary'), min: 1, max: 1, statementTimeoutMs: 7000, timezone: 'Europe/Paris' });
    replica = await startApp({
      preset: 'test',
      applicationName: APP_REPLICA,
      primary: nodeOptions('primary'),
      replicas: [nodeOptions('replica1')],
      min: 1,
      max: 1,
      statementTimeoutMs: 7000,
      routing: { fallbackToPrimary: false },
    });
    clean = await sessionOn(primary, false);
    cleanReplica = await sessionOn(replica, true);
  }, 30_000);

  afterAll(async () => {
    await primary?.close();
    await replica?.close();
    await waitForNoSessions(APP, { timeoutMs: 5000, everyMs: 50 });
    await waitForNoSessions(APP_REPLICA, { timeoutMs: 5000, everyMs: 50 });
  }, 30_000);

  it('starts from the library settings on a clean session', () => {
    expect(clean).toMatchObject({ port: clusterConfig.primary.port, user: 'app', tenant: '', statementTimeout: '7s', timeZone: 'Europe/Paris', readOnly: 'off', applicationName: APP });
    expect(cleanReplica).toMatchObject({ port: clusterConfig.replica1.port, user: 'app', statementTimeout: '7s', timeZone: 'UTC', readOnly: 'on', applicationName: APP_REPLICA });
  });

  const primaryCases: Array<[string, (t: TestApp) => Promise<unknown>]> = [
    ['a tenant setting (set_config(…, false))', (t) => t.db.query("SELECT set_config('app.tenant_id', 'tenant-A', false)")],
    ['SET ROLE pg_read_all_data', (t) => t.db.query('SET ROLE pg_read_all_data')],
    ['search_path set through withClient', (t) => t.db.withClient((c: PoolClient) => c.query('SET search_path = tenant_b'))],
    ['LISTEN', (t) => t.db.query('LISTEN tenant_events')],
    ['a temporary table', (t) => t.db.query('CREATE TEMP TABLE leaked_rows (id int)')],
    ['a session advisory lock', (t) => t.db.query('SELECT pg_advisory_lock(424242)')],
    ['a caller PREPARE', (t) => t.db.query('PREPARE caller_stmt AS SELECT 1')],
    ['a cursor WITH HOLD', (t) => t.db.query('DECLARE held_cursor CURSOR WITH HOLD FOR SELECT 1')],
    ['a session SET inside db.transaction()', (t) => t.db.transaction((tx) => tx.query('SET search_path = tenant_b'))],
    ['a SET through db.routedPool.connect()', async (t) => {
      const client = await t.db.routedPool.connect();
      try {
        await client.query("SELECT set_config('app.tenant_id', 'tenant-A', false)");
      } finally {
        client.release();
      }
    }],
    ['the library settings changed by the borrower', (t) => t.db.query("SET statement_timeout = 0; SET TimeZone = 'Asia/Tokyo'; SET application_name = 'borrowed'; SET default_transaction_read_only = on")],
  ];

  it.each(primaryCases)('primary: %s does not reach the next borrower', async (_what, change) => {
    await primary.db.scope(() => change(primary));
    const next = await sessionOn(primary, false);
    expect(next).toEqual(clean);
  });

  const replicaCases: Array<[string, Run]> = [
    ['a tenant setting (set_config(…, false))', "SELECT set_config('app.tenant_id', 'tenant-A', false)"],
    ['SET ROLE pg_read_all_data', 'SET ROLE pg_read_all_data'],
    ['a session advisory lock', 'SELECT pg_advisory_lock(424242)'],
    ['a caller PREPARE', 'PREPARE caller_stmt AS SELECT 1'],
    ['the read-only setting and statement_timeout', 'SET default_transaction_read_only = off; SET statement_timeout = 0'],
  ].map(([what, sql]) => [what!, sql as unknown as Run]);

  it.each(replicaCases)('replica: %s does not reach the next borrower', async (_what, sql) => {
    await replica.db.scope(() => replica.db.replica.query(sql as unknown as string));
    expect(await sessionOn(replica, true)).toEqual(cleanReplica);
  });

  it('replica: search_path through withClient({ readOnly: true }) does not reach the next borrower', async () => {
    await replica.db.scope(() => replica.db.withClient((c: PoolClient) => c.query('SET search_path = tenant_b'), { readOnly: true }));
    expect(await sessionOn(replica, true)).toEqual(cleanReplica);
  });

  it('keeps the automatic statement cache (__pgp_ names) and the driver-named statements across a reset', async () => {
    await primary.db.withClient(async (c: PoolClient) => {
      await c.query('PREPARE __pgp_kept AS SELECT 1');
      await c.query({ name: 'caller_named', text: 'SELECT 2 AS n' });
      await c.query('SET search_path = tenant_b');
    });
    const names = await primary.db.query<{ name: string }>('SELECT name FROM pg_prepared_statements ORDER BY name');
    expect(names.rows.map((r) => r.name)).toEqual(['__pgp_kept', 'caller_named']);
    const again = await primary.db.withClient((c: PoolClient) => c.query<{ n: number }>({ name: 'caller_named', text: 'SELECT 2 AS n' }));
    expect(again.rows).toEqual([{ n: 2 }]);
    await primary.db.query('DEALLOCATE __pgp_kept');
  });

  it('sends no reset for checkouts that changed nothing', async () => {
    // With one connection, a statement runs only once the reset before it (if any) is done.
    await primary.db.query('SELECT 1');
    const before = primary.cluster.primary.counters.sessionResets;
    await primary.db.withClient((c: PoolClient) => c.query('SELECT $1::int AS n', [1]));
    await primary.db.transaction((tx) => tx.query('SELECT 1'));
    await primary.db.query('UPDATE session_reset_items SET name = $1 WHERE id = $2', ['x', 1]);
    expect(primary.cluster.primary.counters.sessionResets).toBe(before);
    await primary.db.query('SET search_path = tenant_b');
    await primary.db.query('SELECT 1');
    expect(primary.cluster.primary.counters.sessionResets).toBe(before + 1);
  });

  it('runs onConnect again after a reset, so what it set up is back', async () => {
    const hooked = await startApp({
      preset: 'test',
      applicationName: APP_HOOKED,
      primary: nodeOptions('primary'),
      min: 1,
      max: 1,
      onConnect: async (client) => {
        await client.query("SET search_path = tenant_b, public; SELECT set_config('app.region', 'eu', false)");
      },
    });
    try {
      const facts = "SELECT pg_backend_pid() AS pid, current_setting('search_path') AS path, current_setting('app.region') AS region, coalesce(current_setting('app.tenant_id', true), '') AS tenant";
      const first = (await hooked.db.query(facts)).rows[0];
      expect(first).toMatchObject({ path: 'tenant_b, public', region: 'eu', tenant: '' });
      await hooked.db.query("SET search_path = public; SELECT set_config('app.region', 'us', false), set_config('app.tenant_id', 'tenant-A', false)");
      expect((await hooked.db.query(facts)).rows[0]).toEqual(first);
      expect(hooked.cluster.primary.counters.sessionResets).toBe(1);
    } finally {
      await hooked.close();
    }
  });

  it("leaves the session as it is with resetOnRelease: 'never'", async () => {
    const never = await startApp({ preset: 'test', applicationName: APP_NEVER, primary: nodeOptions('primary'), min: 1, max: 1, resetOnRelease: 'never' });
    try {
      await never.db.query("SELECT set_config('app.tenant_id', 'tenant-A', false)");
      expect((await sessionOn(never, false)).tenant).toBe('tenant-A');
    } finally {
      await never.close();
    }
  });
});
