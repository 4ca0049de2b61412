import { jest } from '@jest/globals';
import { Body, Controller, Inject, Injectable, Module, Post, type INestApplication } from '@nestjs/common';
import request from 'supertest';
import { PoolModule, ReadOnly, type PoolModuleRootOptions } from 'nestjs-pg-pools';
import { adminQuery, type PgNodeName } from '../support/cluster.js';
import { expectNoSessionsLeft } from '../support/sessions.js';
import { DRIZZLE, drizzleFind, drizzleInsert, KYSELY, kyselyFind, kyselyInsert, QB_TABLE, queryBuilderProviders, type QbDrizzle, type QbKysely } from '../support/query-builders.js';
import { adapters, createHttpApp, delayReplay, routingOptions, tally, undoDelayReplay, waitForReplay } from '../support/routing.support.js';

// Read-your-writes for query builders on db.routedPool, on the real cluster: replica1 applies WAL
// 3 s late (recovery_min_apply_delay, reset in afterAll) and stays in rotation
// (maxReplicationLagMs: 0). A Kysely / Drizzle insert — a plain statement or the builder's own
// transaction — followed in the same request by a @ReadOnly() read through the same builder
// returns the new row every time; with consistency "eventual" the same requests miss rows on
// replica1, which shows the delayed replica really is in play.

const APP = 'e2e-query-builders-consistency';
const DELAY = '3s';

jest.setTimeout(30_000);

let nextId = 1;

type Found = { found: boolean; node: PgNodeName };

@Injectable()
class QbFinds {
  constructor(
    @Inject(KYSELY) readonly kysely: QbKysely,
    @Inject(DRIZZLE) readonly drizzle: QbDrizzle,
  ) {}

  @ReadOnly()
  kyselyFind(id: number): Promise<Found> {
    return kyselyFind(this.kysely, id);
  }

  @ReadOnly()
  drizzleFind(id: number): Promise<Found> {
    return drizzleFind(this.drizzle, id);
  }
}

@Controller('qb')
class QbWritesController {
  constructor(
    @Inject(KYSELY) private readonly kysely: QbKysely,
    @Inject(DRIZZLE) private readonly drizzle: QbDrizzle,
    private readonly finds: QbFinds,
  ) {}

  @Post('kysely')
  async kyselyInsertThenRead(@Body() body: { id: number }): Promise<Found> {
    await kyselyInsert(this.kysely, body.id);
    return this.finds.kyselyFind(body.id);
  }

  @Post('drizzle')
  async drizzleInsertThenRead(@Body() body: { id: number }): Promise<Found> {
    await drizzleInsert(this.drizzle, body.id);
    return this.finds.drizzleFind(body.id);
  }

  @Post('kysely-transaction')
  async kyselyTransactionThenRead(@Body() body: { id: number }): Promise<Found> {
    await this.kysely.transaction().execute((trx) => kyselyInsert(trx, body.id));
    return this.finds.kyselyFind(body.id);
  }

  @Post('drizzle-transaction')
  async drizzleTransactionThenRead(@Body() body: { id: number }): Promise<Found> {
    await this.drizzle.transaction((tx) => drizzleInsert(tx, body.id));
    return this.finds.drizzleFind(body.id);
  }
}

function moduleFor(extra: Partial<PoolModuleRootOptions>) {
  @Module({ imports: [PoolModule.forRoot(routingOptions(APP, extra))], controllers: [QbWritesController], providers: [...queryBuilderProviders, QbFinds] })
  class QbConsistencyModule {}
  return QbConsistencyModule;
}

beforeAll(async () => {
  await adminQuery('primary', `DROP TABLE IF EXISTS ${QB_TABLE}; CREATE TABLE ${QB_TABLE} (id int PRIMARY KEY, note text NOT NULL)`, [], { as: 'app' });
  await Promise.all([waitForReplay('replica1'), waitForReplay('replica2')]);
  await delayReplay('replica1', DELAY);
}, 30_000);

afterAll(async () => {
  await undoDelayReplay('replica1', QB_TABLE);
  await expectNoSessionsLeft(APP);
}, 60_000);

const ROUTES = ['kysely', 'drizzle', 'kysely-transaction', 'drizzle-transaction'] as const;

describe('control: consistency "eventual"', () => {
  it('a Kysely insert then a @ReadOnly() Kysely read in one request misses rows on the delayed replica', async () => {
    const app = await createHttpApp(moduleFor({ routing: { maxReplicationLagMs: 0, consistency: 'eventual' } }), 'express');
    try {
      const results: Found[] = [];
      for (let i = 0; i < 10; i++) results.push((await request(app.getHttpServer()).post('/qb/kysely').send({ id: nextId++ }).expect(201)).body);
      expect(results.filter((r) => !r.found && r.node === 'replica1').length).toBeGreaterThanOrEqual(3);
    } finally {
      await app.close();
    }
  });
});

describe.each(adapters)('read-your-writes with replica1 3 s behind, on %s', (adapter) => {
  let app: INestApplication;

  beforeAll(async () => {
    app = await createHttpApp(moduleFor({ routing: { maxReplicationLagMs: 0 } }), adapter);
  });

  afterAll(async () => {
    await app?.close();
  });

  it.each(ROUTES)('%s: insert, then a @ReadOnly() read in the same request, finds the row in 20 of 20 requests', async (route) => {
    const results: Found[] = [];
    for (let i = 0; i < 20; i++) results.push((await request(app.getHttpServer()).post(`/qb/${route}`).send({ id: nextId++ }).expect(201)).body);
    expect(results.filter((r) => !r.found)).toEqual([]);
    expect(tally(results.map((r) => r.node)).replica1).toBe(0);
  });
});
