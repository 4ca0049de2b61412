import { jest } from '@jest/globals';
import type { INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import type { Pool } from 'pg';
import request from 'supertest';
import { DatabaseService, getDatabaseToken, getPoolToken, PoolModule } from 'nestjs-pg-pools';
import { clusterConfig } from '../support/cluster.js';
import { librarySessions, poolSessionCounts, waitUntil } from '../support/foundation-db.js';
import { routingOptions } from '../support/routing.support.js';
import { NAMED_ANALYTICS_APP_NAME, NAMED_DEFAULT_APP_NAME, NamedDatabasesFixtureModule } from '../support/foundation-named.module.js';

jest.setTimeout(15_000);

const { primary, replica1, replica2 } = clusterConfig.ports;

let app: INestApplication | undefined;

beforeAll(async () => {
  const moduleRef = await Test.createTestingModule({ imports: [NamedDatabasesFixtureModule] }).compile();
  app = moduleRef.createNestApplication({ logger: false });
  await app.init();
});

afterAll(async () => {
  await app?.close();
});

const answer = (port: number, applicationName: string) => ({ port, inRecovery: port !== primary, applicationName });

describe('two databases side by side (forRoot + forRootAsync with name)', () => {
  it('warms each database up to its own min on its own servers', async () => {
    expect(await poolSessionCounts(NAMED_DEFAULT_APP_NAME)).toEqual({ primary: 1, replica1: 1, replica2: 1 });
    expect(await poolSessionCounts(NAMED_ANALYTICS_APP_NAME)).toEqual({ primary: 2, replica1: 0, replica2: 2 });
  });

  it('injects the default database by class and the named one with @InjectDatabase / @InjectPool(name, role)', async () => {
    const server = app!.getHttpServer();
    const main = await request(server).get('/probe').expect(200);
    expect(main.body).toEqual({
      service: answer(primary, NAMED_DEFAULT_APP_NAME),
      primaryPool: answer(primary, NAMED_DEFAULT_APP_NAME),
      replicaPools: [answer(replica1, NAMED_DEFAULT_APP_NAME), answer(replica2, NAMED_DEFAULT_APP_NAME)],
    });
    const analytics = await request(server).get('/analytics/probe').expect(200);
    expect(analytics.body).toEqual({
      service: answer(primary, NAMED_ANALYTICS_APP_NAME),
      primaryPool: answer(primary, NAMED_ANALYTICS_APP_NAME),
      replicaPools: [answer(replica2, NAMED_ANALYTICS_APP_NAME)],
    });
  });

  it('keeps separate services, pools and settings per database', async () => {
    const main = app!.get(DatabaseService);
    const analytics = app!.get<DatabaseService>(getDatabaseToken('analytics'));
    expect(main).not.toBe(analytics);
    expect([main.name, analytics.name]).toEqual(['default', 'analytics']);
    expect(app!.get<Pool>(getPoolToken('analytics', 'primary'))).not.toBe(app!.get<Pool>(getPoolToken(undefined, 'primary')));
    const timeout = async (db: DatabaseService) => (await db.query<{ statement_timeout: string }>('SHOW statement_timeout')).rows[0]!.statement_timeout;
    expect(await timeout(main)).toBe('1min');
    expect(await timeout(analytics)).toBe('9s');
  });

  it('a transaction on one database does not capture queries of the other', async () => {
    const main = app!.get(DatabaseService);
    const analytics = app!.get<DatabaseService>(getDatabaseToken('analytics'));
    const appName = `SELECT current_setting('application_name') AS name, pg_backend_pid() AS pid`;
    await analytics.transaction(async (tx) => {
      const inside = (await tx.query<{ name: string; pid: number }>(appName)).rows[0]!;
      const joined = (await analytics.query<{ name: string; pid: number }>(appName)).rows[0]!;
      const other = (await main.query<{ name: string; pid: number }>(appName)).rows[0]!;
      expect(inside.name).toBe(NAMED_ANALYTICS_APP_NAME);
      expect(joined.pid).toBe(inside.pid);
      expect(other.name).toBe(NAMED_DEFAULT_APP_NAME);
      expect(other.pid).not.toBe(inside.pid);
    });
  });

  it('app.close() closes both databases and leaves no server connection behind', async () => {
    await app!.close();
    app = undefined;
    expect(await waitUntil(() => librarySessions(NAMED_DEFAULT_APP_NAME), (n) => n === 0)).toBe(0);
    expect(await waitUntil(() => librarySessions(NAMED_ANALYTICS_APP_NAME), (n) => n === 0)).toBe(0);
  });
});

describe('two PoolModule imports with the same name in one application', () => {
  it('fails at start with one clear error, before the second one connects', async () => {
    const applicationName = 'e2e-named-duplicate';
    const options = { ...routingOptions(applicationName), lazy: true, min: 0 };
    const compiling = Test.createTestingModule({
      imports: [PoolModule.forRoot(options), PoolModule.forRoot({ ...options, max: 3 })],
    }).compile();
    await expect(compiling).rejects.toThrow(
      'Cannot register database "default" because this application already has a database of that name. ' +
        'Please make sure that every PoolModule.forRoot() of one application has its own `name`.',
    );
    expect(await librarySessions(applicationName)).toBe(0);
  });
});
