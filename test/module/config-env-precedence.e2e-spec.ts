import { jest } from '@jest/globals';
import { Test, type TestingModule } from '@nestjs/testing';
import type { Pool } from 'pg';
import {
  DatabaseService,
  PoolAcquireTimeoutError,
  PoolModule,
  getDatabaseToken,
  getPoolToken,
  type PoolModuleRootOptions,
} from 'nestjs-pg-pools';
import { clusterConfig, nodeOptions } from '../support/cluster.js';
import { librarySessions, nodeUrl, poolSessionCounts, waitUntil } from '../support/foundation-db.js';
import { WHO_ANSWERS, type Answer } from '../support/foundation-probe.js';

jest.setTimeout(15_000);

const APP = 'fnd-config-env';
const { primary, replica2 } = clusterConfig.ports;
let seq = 0;

interface Started {
  app: TestingModule;
  db: DatabaseService;
  applicationName: string;
}

const running: Started[] = [];

async function start(options: Partial<PoolModuleRootOptions>): Promise<Started> {
  const applicationName = `${APP}-${++seq}`;
  const app = await Test.createTestingModule({
    imports: [PoolModule.forRoot({ primary: nodeOptions('primary'), applicationName, sizingAdvisor: false, ...options } as PoolModuleRootOptions)],
  }).compile();
  await app.init();
  const started = { app, db: app.get<DatabaseService>(getDatabaseToken(options.name)), applicationName };
  running.push(started);
  return started;
}

async function stop(started: Started): Promise<void> {
  running.splice(running.indexOf(started), 1);
  await started.app.close();
  expect(await waitUntil(() => librarySessions(started.applicationName), (n) => n === 0)).toBe(0);
}

afterEach(async () => {
  for (const started of running.splice(0)) await started.app.close();
});

async function statementTimeout(db: DatabaseService): Promise<string> {
  return (await db.query<{ statement_timeout: string }>('SHOW statement_timeout')).rows[0]!.statement_timeout;
}

async function primarySessions(applicationName: string): Promise<number> {
  return (await poolSessionCounts(applicationName)).primary!;
}

/** Checks out `count` clients through DatabaseService and keeps them until `release()`. */
async function holdClients(db: DatabaseService, count: number): Promise<{ release(): Promise<void> }> {
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  let held = 0;
  const all = Array.from({ length: count }, () =>
    db.withClient(async () => {
      held++;
      await gate;
    }),
  );
  await waitUntil(() => held, (n) => n === count, 5000, 10);
  expect(held).toBe(count);
  return {
    async release() {
      open();
      await Promise.all(all);
    },
  };
}

/** The pool's max, as a user sees it: `max` clients can be held, one more times out, the server shows `max` sessions. */
async function expectMax(started: Started, max: number, acquireWindow: [number, number] = [0, 3000]): Promise<number> {
  const holder = await holdClients(started.db, max);
  try {
    const t0 = Date.now();
    const error = await started.db.query('SELECT 1').then(
      () => undefined,
      (err: unknown) => err,
    );
    const waited = Date.now() - t0;
    expect(error).toBeInstanceOf(PoolAcquireTimeoutError);
    expect(waited).toBeGreaterThanOrEqual(acquireWindow[0]);
    expect(waited).toBeLessThan(acquireWindow[1]);
    expect(await primarySessions(started.applicationName)).toBe(max);
    return waited;
  } finally {
    await holder.release();
  }
}

describe('presets', () => {
  it('DB_ENV=test (over NODE_ENV): min 2, max 5, statement timeout 30 s', async () => {
    const started = await start({ acquireTimeoutMs: 300, env: { DB_ENV: 'test', NODE_ENV: 'production' } });
    expect(await primarySessions(started.applicationName)).toBe(2);
    expect(await statementTimeout(started.db)).toBe('30s');
    await expectMax(started, 5);
    await stop(started);
  });

  it('NODE_ENV=production without DB_ENV: min 10, max 50, statement timeout 60 s', async () => {
    const started = await start({ env: { NODE_ENV: 'production' } });
    expect(await primarySessions(started.applicationName)).toBe(10);
    expect(await statementTimeout(started.db)).toBe('1min');
    expect(started.app.get<Pool>(getPoolToken()).options.max).toBe(50);
    await stop(started);
  });

  it('no DB_ENV and an unknown NODE_ENV: development, min 5, statement timeout 60 s', async () => {
    const started = await start({ env: { NODE_ENV: 'staging' } });
    expect(await primarySessions(started.applicationName)).toBe(5);
    expect(await statementTimeout(started.db)).toBe('1min');
    await stop(started);
  });
});

describe('explicit options beat the preset', () => {
  it('min, max, statementTimeoutMs and acquireTimeoutMs given in forRoot win over DB_ENV=production', async () => {
    const started = await start({ min: 1, max: 3, statementTimeoutMs: 12_000, acquireTimeoutMs: 300, env: { DB_ENV: 'production' } });
    expect(await primarySessions(started.applicationName)).toBe(1);
    expect(await statementTimeout(started.db)).toBe('12s');
    await expectMax(started, 3, [250, 3000]);
    await stop(started);
  });
});

describe('DB_* environment variables beat explicit options', () => {
  it('DB_POOL_MIN_SIZE, DB_POOL_MAX_SIZE, DB_STATEMENT_TIMEOUT_MS, DB_POOL_ACQUIRE_TIMEOUT_MS, DB_POOL_IDLE_TIMEOUT_MS', async () => {
    const started = await start({
      min: 1,
      max: 8,
      statementTimeoutMs: 12_000,
      acquireTimeoutMs: 5000,
      idleTimeoutMs: 60_000,
      env: {
        DB_ENV: 'production',
        DB_POOL_MIN_SIZE: '3',
        DB_POOL_MAX_SIZE: '4',
        DB_STATEMENT_TIMEOUT_MS: '7000',
        DB_POOL_ACQUIRE_TIMEOUT_MS: '250',
        DB_POOL_IDLE_TIMEOUT_MS: '200',
      },
    });
    expect(await primarySessions(started.applicationName)).toBe(3);
    expect(await statementTimeout(started.db)).toBe('7s');
    await expectMax(started, 4, [200, 2500]);
    // The 4th connection is above min: it closes after the 200 ms idle timeout, min stays open.
    expect(await waitUntil(() => primarySessions(started.applicationName), (n) => n === 3, 3000)).toBe(3);
    await stop(started);
  });

  it('a node-level max loses to DB_POOL_MAX_SIZE too', async () => {
    const started = await start({
      primary: nodeOptions('primary', { max: 9 }),
      min: 0,
      acquireTimeoutMs: 300,
      env: { DB_POOL_MAX_SIZE: '2' },
    });
    await expectMax(started, 2);
    await stop(started);
  });

  it('DB_PRIMARY_URL and DB_REPLICA_URLS replace the configured servers', async () => {
    const started = await start({
      primary: nodeOptions('replica1', { name: 'main' }),
      replicas: [nodeOptions('replica1'), nodeOptions('replica2')],
      min: 1,
      env: { DB_PRIMARY_URL: nodeUrl('primary'), DB_REPLICA_URLS: nodeUrl('replica2') },
    });
    const answer = (await started.db.query<Answer>(WHO_ANSWERS)).rows[0]!;
    expect(answer).toEqual({ port: primary, inRecovery: false, applicationName: started.applicationName });
    const replicaPools = started.app.get<Pool[]>(getPoolToken(undefined, 'replicas'));
    const replicaAnswers = await Promise.all(replicaPools.map(async (pool) => (await pool.query<Answer>(WHO_ANSWERS)).rows[0]!.port));
    expect(replicaAnswers).toEqual([replica2]);
    expect(await poolSessionCounts(started.applicationName)).toEqual({ primary: 1, replica1: 0, replica2: 1 });
    await stop(started);
  });

  it('a named database reads DB_<NAME>_* and ignores the default database variables', async () => {
    const started = await start({
      name: 'reports',
      min: 1,
      env: { DB_STATEMENT_TIMEOUT_MS: '1111', DB_REPORTS_STATEMENT_TIMEOUT_MS: '3500', DB_POOL_MIN_SIZE: '4' },
    });
    expect(await statementTimeout(started.db)).toBe('3500ms');
    expect(await primarySessions(started.applicationName)).toBe(1);
    await stop(started);
  });

  it('reads process.env when no env option is given', async () => {
    const saved = { ...process.env };
    process.env.DB_STATEMENT_TIMEOUT_MS = '4321';
    process.env.DB_POOL_MIN_SIZE = '1';
    process.env.DB_POOL_MAX_SIZE = '2';
    delete process.env.DB_PRIMARY_URL;
    delete process.env.DB_REPLICA_URLS;
    try {
      const started = await start({ min: 3, max: 6 });
      expect(await statementTimeout(started.db)).toBe('4321ms');
      expect(await primarySessions(started.applicationName)).toBe(1);
      expect(started.app.get<Pool>(getPoolToken()).options.max).toBe(2);
      await stop(started);
    } finally {
      for (const key of ['DB_STATEMENT_TIMEOUT_MS', 'DB_POOL_MIN_SIZE', 'DB_POOL_MAX_SIZE', 'DB_PRIMARY_URL', 'DB_REPLICA_URLS']) {
        if (saved[key] === undefined) delete process.env[key];
        else process.env[key] = saved[key];
      }
    }
  });
});
