import { jest } from '@jest/globals';
import type { INestApplication, Type } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import type { Pool } from 'pg';
import request from 'supertest';
import { DatabaseService, getPoolToken } from 'nestjs-pg-pools';
import { AsyncClassFixtureModule, CLASS_APP_NAME, PoolConfigService } from '../support/foundation-async-class.module.js';
import { AsyncConfigFixtureModule, CONFIG_APP_NAME } from '../support/foundation-async-config.module.js';
import { AsyncExistingFixtureModule, EXISTING_APP_NAME, ExistingPoolConfig } from '../support/foundation-async-existing.module.js';
import { AsyncFactoryFixtureModule, FACTORY_APP_NAME } from '../support/foundation-async-factory.module.js';
import { clusterConfig } from '../support/cluster.js';
import { librarySessions, poolSessionCounts, waitUntil } from '../support/foundation-db.js';
import { ROOT_APP_NAME, RootFixtureModule } from '../support/foundation-root.module.js';
import { GLOBAL_APP_NAME, GlobalFixtureModule, SCOPED_APP_NAME, ScopedFixtureModule, ScopedSiblingFixtureModule } from '../support/foundation-scoped.module.js';

jest.setTimeout(15_000);

const { primary, replica1, replica2 } = clusterConfig.ports;

async function start(fixture: Type): Promise<INestApplication> {
  const moduleRef = await Test.createTestingModule({ imports: [fixture] }).compile();
  const app = moduleRef.createNestApplication({ logger: false });
  await app.init();
  return app;
}

const primaryAnswer = (applicationName: string) => ({ port: primary, inRecovery: false, applicationName });
const replicaAnswer = (port: number, applicationName: string) => ({ port, inRecovery: true, applicationName });

describe.each([
  ['PoolModule.forRoot()', RootFixtureModule, ROOT_APP_NAME, [replica1, replica2]],
  ['forRootAsync({ useFactory, inject, imports })', AsyncFactoryFixtureModule, FACTORY_APP_NAME, [replica1, replica2]],
  ['forRootAsync({ useFactory }) with @nestjs/config ConfigService', AsyncConfigFixtureModule, CONFIG_APP_NAME, [replica2]],
  ['forRootAsync({ useClass })', AsyncClassFixtureModule, CLASS_APP_NAME, [replica1, replica2]],
  ['forRootAsync({ useExisting })', AsyncExistingFixtureModule, EXISTING_APP_NAME, [replica1, replica2]],
])('%s', (_style, fixture, applicationName, replicaPorts) => {
  let app: INestApplication | undefined;

  beforeAll(async () => {
    app = await start(fixture);
  });

  afterAll(async () => {
    await app?.close();
  });

  it('warms every pool up to min before the app starts (pg_stat_activity)', async () => {
    const counts = await poolSessionCounts(applicationName);
    expect(counts).toEqual({ primary: 1, replica1: replicaPorts.includes(replica1) ? 1 : 0, replica2: 1 });
  });

  it('answers from the primary through DatabaseService and @InjectPool(), and from each replica through the replica pools', async () => {
    const res = await request(app!.getHttpServer()).get('/probe').expect(200);
    expect(res.body).toEqual({
      service: primaryAnswer(applicationName),
      primaryPool: primaryAnswer(applicationName),
      replicaPools: replicaPorts.map((port) => replicaAnswer(port, applicationName)),
    });
  });

  it('leaves no server connection behind after app.close()', async () => {
    await app!.close();
    app = undefined;
    expect(await waitUntil(() => librarySessions(applicationName), (n) => n === 0)).toBe(0);
  });
});

describe('option sources', () => {
  it('takes max and statement timeout from ConfigService', async () => {
    const app = await start(AsyncConfigFixtureModule);
    try {
      const db = app.get(DatabaseService);
      const { rows } = await db.query<{ statement_timeout: string }>('SHOW statement_timeout');
      expect(rows[0]!.statement_timeout).toBe('4500ms');
      expect(app.get<Pool>(getPoolToken()).options.max).toBe(4);
    } finally {
      await app.close();
    }
  });

  it('instantiates a useClass factory once, and uses the exported instance for useExisting', async () => {
    const classesBefore = PoolConfigService.created;
    const existingBefore = ExistingPoolConfig.created;
    const appA = await start(AsyncClassFixtureModule);
    const appB = await start(AsyncExistingFixtureModule);
    try {
      expect(PoolConfigService.created - classesBefore).toBe(1);
      expect(ExistingPoolConfig.created - existingBefore).toBe(1);
      expect(appB.get(ExistingPoolConfig, { strict: false })).toBeInstanceOf(ExistingPoolConfig);
    } finally {
      await appA.close();
      await appB.close();
    }
  });

  it('fails clearly when forRootAsync has no options source', async () => {
    const { PoolModule } = await import('nestjs-pg-pools');
    expect(() => PoolModule.forRootAsync({ name: 'reports' })).toThrow(
      new TypeError(
        'Cannot register PoolModule.forRootAsync("reports") because it has no options source. ' +
          'Please make sure that one of useFactory, useClass or useExisting is given.',
      ),
    );
  });
});

describe('isGlobal', () => {
  /** Starts `module`, asks its /probe who answers, closes it, and checks no session of `applicationName` is left. */
  async function probeOnce(module: Type, applicationName: string): Promise<{ service: unknown }> {
    const app = await start(module);
    try {
      return (await request(app.getHttpServer()).get('/probe').expect(200)).body;
    } finally {
      await app.close();
      expect(await waitUntil(() => librarySessions(applicationName), (n) => n === 0)).toBe(0);
    }
  }

  it('makes the database injectable in feature modules that do not import PoolModule (default true)', async () => {
    const report = await probeOnce(GlobalFixtureModule, GLOBAL_APP_NAME);
    expect(report.service).toEqual(primaryAnswer(GLOBAL_APP_NAME));
  });

  it('with isGlobal: false, the importing module can inject it', async () => {
    const report = await probeOnce(ScopedFixtureModule, SCOPED_APP_NAME);
    expect(report.service).toEqual(primaryAnswer(SCOPED_APP_NAME));
  });

  it('with isGlobal: false, a sibling module that does not import PoolModule cannot', async () => {
    await expect(start(ScopedSiblingFixtureModule)).rejects.toThrow(
      /Nest can't resolve dependencies of the ProbeService \(\?, .*\)\. Please make sure that the argument DatabaseService at index \[0\] is available in the ProbeFeatureModule/,
    );
  });
});
