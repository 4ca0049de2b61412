import { jest } from '@jest/globals';
import { Test, type TestingModule } from '@nestjs/testing';
import type { Pool, PoolClient } from 'pg';
import {
  DatabaseService,
  PoolConnectionError,
  PoolModule,
  getDatabaseToken,
  getPoolToken,
  type ConnectContext,
  type PoolModuleRootOptions,
} from 'nestjs-pg-pools';
import { adminQuery, clusterConfig, nodeOptions, replicaOptions } from '../support/cluster.js';
import { librarySessions, waitUntil } from '../support/foundation-db.js';

jest.setTimeout(15_000);

const APP = 'fnd-lifecycle-init';
const TABLE = 'fnd_init_writes';
const { primary, replica1, replica2 } = clusterConfig.ports;

let seq = 0;
const running: TestingModule[] = [];

async function start(extra: Partial<PoolModuleRootOptions>): Promise<{ app: TestingModule; applicationName: string }> {
  const applicationName = extra.applicationName ?? `${APP}-${++seq}`;
  const app = await Test.createTestingModule({
    imports: [PoolModule.forRoot({ primary: nodeOptions('primary'), replicas: replicaOptions(), min: 1, max: 3, sizingAdvisor: false, env: {}, ...extra, applicationName })],
  }).compile();
  running.push(app);
  await app.init();
  return { app, applicationName };
}

afterEach(async () => {
  for (const app of running.splice(0)) await app.close();
});

const SESSION =
  `SELECT inet_server_port() AS port, current_setting('application_name') AS "applicationName", ` +
  `current_setting('statement_timeout') AS "statementTimeout", current_setting('TimeZone') AS "timeZone", ` +
  `current_setting('default_transaction_read_only') AS "readOnly"`;

function everyPool(app: TestingModule, name?: string): Pool[] {
  return [app.get<Pool>(getPoolToken(name, 'primary')), ...app.get<Pool[]>(getPoolToken(name, 'replicas'))];
}

describe('every new connection', () => {
  it('carries application_name, statement_timeout and TimeZone=UTC; replicas are read-only', async () => {
    const { app, applicationName } = await start({ statementTimeoutMs: 2500 });
    const sessions = await Promise.all(everyPool(app).map(async (pool) => (await pool.query(SESSION)).rows[0]));
    const common = { applicationName, statementTimeout: '2500ms', timeZone: 'UTC' };
    expect(sessions).toEqual([
      { port: primary, readOnly: 'off', ...common },
      { port: replica1, readOnly: 'on', ...common },
      { port: replica2, readOnly: 'on', ...common },
    ]);
    const db = app.get(DatabaseService);
    expect((await db.query<{ TimeZone: string }>('SHOW timezone')).rows[0]!.TimeZone).toBe('UTC');
    expect((await db.replica.query<{ default_transaction_read_only: string }>('SHOW default_transaction_read_only')).rows[0]!.default_transaction_read_only).toBe('on');
  });

  it('enforces statement_timeout server-side', async () => {
    const { app } = await start({ statementTimeoutMs: 300 });
    const t0 = Date.now();
    await expect(app.get(DatabaseService).query('SELECT pg_sleep(2)')).rejects.toMatchObject({
      code: '57014',
      message: 'canceling statement due to statement timeout',
    });
    expect(Date.now() - t0).toBeLessThan(1500);
  });

  it('uses the configured time zone', async () => {
    const { app } = await start({ timezone: 'Asia/Seoul' });
    const db = app.get(DatabaseService);
    expect((await db.query<{ TimeZone: string }>('SHOW timezone')).rows[0]!.TimeZone).toBe('Asia/Seoul');
    const { rows } = await db.query<{ local: string }>(`SELECT '2024-01-01 00:00:00+00'::timestamptz::text AS local`);
    expect(rows[0]!.local).toBe('2024-01-01 09:00:00+09');
  });
});

describe('onConnect', () => {
  it('runs once per new connection with { database, pool, role } before the connection is handed out', async () => {
    const calls: ConnectContext[] = [];
    const onConnect = async (client: PoolClient, context: ConnectContext) => {
      calls.push(context);
      await client.query(`SELECT set_config('fnd.node', $1, false)`, [context.pool]);
    };
    const { app } = await start({ name: 'analytics', min: 2, onConnect });
    const byPool = (pool: string) => calls.filter((c) => c.pool === pool);
    expect(calls).toHaveLength(6);
    expect(byPool('primary')).toEqual([
      { database: 'analytics', pool: 'primary', role: 'primary' },
      { database: 'analytics', pool: 'primary', role: 'primary' },
    ]);
    expect(byPool('replica-1')).toEqual(Array(2).fill({ database: 'analytics', pool: 'replica-1', role: 'replica' }));
    expect(byPool('replica-2')).toEqual(Array(2).fill({ database: 'analytics', pool: 'replica-2', role: 'replica' }));

    const db = app.get<DatabaseService>(getDatabaseToken('analytics'));
    expect((await db.query<{ node: string }>(`SELECT current_setting('fnd.node') AS node`)).rows[0]!.node).toBe('primary');
    const replicaNodes = await Promise.all([0, 1].map(async () => (await db.replica.query<{ node: string }>(`SELECT current_setting('fnd.node') AS node`)).rows[0]!.node));
    expect(replicaNodes.sort()).toEqual(['replica-1', 'replica-2']);
    // Reused connections are not initialised again.
    await db.query('SELECT 1');
    expect(calls).toHaveLength(6);
  });

  it('a hook that throws discards the connection; at start that fails with PoolConnectionError', async () => {
    const applicationName = `${APP}-hook-throws`;
    const onConnect = () => {
      throw new Error('tenant schema missing');
    };
    await expect(start({ applicationName, replicas: [], onConnect, retryAttempts: 2, retryDelayMs: 10 })).rejects.toThrow(PoolConnectionError);
    await expect(start({ applicationName, replicas: [], onConnect, retryAttempts: 1 })).rejects.toThrow(
      /^Cannot connect to "default\/primary" at 127\.0\.0\.1:\d+ after 1 attempt\(s\): tenant schema missing\. /,
    );
    expect(await waitUntil(() => librarySessions(applicationName), (n) => n === 0)).toBe(0);
  });
});

describe('replica sessions refuse writes', () => {
  beforeAll(async () => {
    await adminQuery('primary', `CREATE TABLE IF NOT EXISTS ${TABLE} (id int)`);
    await adminQuery('primary', `GRANT ALL ON ${TABLE} TO ${clusterConfig.user}`);
    for (const node of ['replica1', 'replica2'] as const) {
      const found = await waitUntil(
        async () => (await adminQuery<{ t: string | null }>(node, `SELECT to_regclass($1)::text AS t`, [TABLE]))[0]!.t,
        (t) => t !== null,
        10_000,
      );
      expect(found).toBe(TABLE);
    }
  });

  afterAll(async () => {
    await adminQuery('primary', `DROP TABLE IF EXISTS ${TABLE}`);
  });

  it('fails fast with SQLSTATE 25006 on every replica and writes nothing anywhere', async () => {
    const { app } = await start({});
    const db = app.get(DatabaseService);
    for (let i = 0; i < 2; i++) {
      await expect(db.replica.query(`INSERT INTO ${TABLE} VALUES (1)`)).rejects.toMatchObject({
        code: '25006',
        message: expect.stringContaining('cannot execute INSERT in a read-only transaction'),
      });
    }
    for (const pool of app.get<Pool[]>(getPoolToken(undefined, 'replicas'))) {
      await expect(pool.query(`INSERT INTO ${TABLE} VALUES (2)`)).rejects.toMatchObject({ code: '25006' });
    }
    expect((await adminQuery<{ n: number }>('primary', `SELECT count(*)::int AS n FROM ${TABLE}`))[0]!.n).toBe(0);
    await db.query(`INSERT INTO ${TABLE} VALUES (3)`);
    expect((await adminQuery<{ n: number }>('primary', `SELECT count(*)::int AS n FROM ${TABLE}`))[0]!.n).toBe(1);
  });
});
