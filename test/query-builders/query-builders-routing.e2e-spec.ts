import { jest } from '@jest/globals';
import { Controller, Get, Inject, Injectable, Module, type INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import request from 'supertest';
import type { Subscription } from 'rxjs';
import { DatabaseService, PoolModule, ReadOnly, Transactional, type PoolEvent, type PoolModuleRootOptions } from 'nestjs-pg-pools';
import { adminQuery, clusterCtl } from '../support/cluster.js';
import { expectNoSessionsLeft } from '../support/sessions.js';
import { sleep, waitFor } from '../support/wait.js';
import { DRIZZLE, drizzleTxid, drizzleWhere, KYSELY, kyselyTxid, kyselyWhere, QB_TABLE, queryBuilderProviders, SEED_ID, QbHandles, type QbDrizzle, type QbKysely } from '../support/query-builders.js';
import { adapters, createHttpApp, ReadLoad, routingOptions, tally, waitForReplay, where, type Where } from '../support/routing.support.js';

// Kysely and Drizzle (the real libraries) on db.routedPool, against the real primary + 2 replicas:
// under @ReadOnly() handlers (Express and Fastify) and provider methods they answer from the
// replicas, spread round-robin; without it from the primary; inside @Transactional() they run in
// the transaction db.query runs in (same txid_current(), same backend); and a replica stopped
// with `pg_ctl stop -m immediate` under a steady read load costs no read.

const APP = 'e2e-query-builders-routing';

jest.setTimeout(30_000);

@Injectable()
class QbReads extends QbHandles {
  @ReadOnly()
  kyselyRead(): Promise<Where> {
    return kyselyWhere(this.kysely);
  }

  @ReadOnly()
  drizzleRead(): Promise<Where> {
    return drizzleWhere(this.drizzle);
  }

  async undecorated(): Promise<Where[]> {
    return [await kyselyWhere(this.kysely), await drizzleWhere(this.drizzle)];
  }

  @Transactional()
  async inTransaction(): Promise<{ txids: string[]; wheres: Where[] }> {
    const txids = [
      (await this.db.query<{ txid: string }>('SELECT txid_current()::text AS txid')).rows[0]!.txid,
      await kyselyTxid(this.kysely),
      await drizzleTxid(this.drizzle),
    ];
    const wheres = [await where(this.db), await kyselyWhere(this.kysely), await drizzleWhere(this.drizzle), await this.kyselyRead(), await this.drizzleRead()];
    return { txids, wheres };
  }
}

@Controller('qb')
class QbController {
  constructor(
    @Inject(KYSELY) private readonly kysely: QbKysely,
    @Inject(DRIZZLE) private readonly drizzle: QbDrizzle,
  ) {}

  @ReadOnly()
  @Get('kysely')
  kyselyRead(): Promise<Where> {
    return kyselyWhere(this.kysely);
  }

  @ReadOnly()
  @Get('drizzle')
  async drizzleRead(): Promise<Where> {
    await sleep(1);
    return drizzleWhere(this.drizzle);
  }

  @Get('undecorated')
  async undecorated(): Promise<Where[]> {
    return [await kyselyWhere(this.kysely), await drizzleWhere(this.drizzle)];
  }
}

function moduleFor(extra: Partial<PoolModuleRootOptions> = {}) {
  @Module({ imports: [PoolModule.forRoot(routingOptions(APP, extra))], controllers: [QbController], providers: [...queryBuilderProviders, QbReads] })
  class QueryBuildersModule {}
  return QueryBuildersModule;
}

beforeAll(async () => {
  await adminQuery('primary', `DROP TABLE IF EXISTS ${QB_TABLE}; CREATE TABLE ${QB_TABLE} (id int PRIMARY KEY, note text NOT NULL)`, [], { as: 'app' });
  await adminQuery('primary', `INSERT INTO ${QB_TABLE} (id, note) VALUES ($1, 'seed')`, [SEED_ID], { as: 'app' });
  await Promise.all([waitForReplay('replica1'), waitForReplay('replica2')]);
}, 30_000);

afterAll(async () => {
  await clusterCtl('start');
  await adminQuery('primary', `DROP TABLE IF EXISTS ${QB_TABLE}`, [], { as: 'app' });
  await expectNoSessionsLeft(APP);
}, 60_000);

const nodesOf = (wheres: readonly Where[]) => wheres.map((w) => w.node);

describe.each(adapters)('Kysely and Drizzle on db.routedPool (%s)', (adapter) => {
  let app: INestApplication;

  beforeAll(async () => {
    app = await createHttpApp(moduleFor(), adapter);
  });

  afterAll(async () => {
    await app?.close();
  });

  const http = () => request(app.getHttpServer());

  it.each(['kysely', 'drizzle'])('%s under a @ReadOnly() handler answers from the replicas, round-robin', async (builder) => {
    const answers: Where[] = [];
    for (let i = 0; i < 20; i++) answers.push((await http().get(`/qb/${builder}`).expect(200)).body);
    expect(answers.every((a) => a.recovery)).toBe(true);
    expect(tally(nodesOf(answers))).toEqual({ primary: 0, replica1: 10, replica2: 10 });
  });

  it('both answer from the primary in an undecorated handler', async () => {
    const answers: Where[] = [];
    for (let i = 0; i < 5; i++) answers.push(...(await http().get('/qb/undecorated').expect(200)).body);
    expect(answers.map((a) => [a.node, a.recovery])).toEqual(Array.from({ length: 10 }, () => ['primary', false]));
  });

  it('@ReadOnly() provider methods send both to the replicas, round-robin; undecorated ones to the primary', async () => {
    const reads = app.get(QbReads);
    const kysely: Where[] = [];
    const drizzle: Where[] = [];
    for (let i = 0; i < 20; i++) kysely.push(await reads.kyselyRead());
    for (let i = 0; i < 20; i++) drizzle.push(await reads.drizzleRead());
    expect(tally(nodesOf(kysely))).toEqual({ primary: 0, replica1: 10, replica2: 10 });
    expect(tally(nodesOf(drizzle))).toEqual({ primary: 0, replica1: 10, replica2: 10 });
    expect([...kysely, ...drizzle].every((a) => a.recovery)).toBe(true);
    expect(nodesOf(await reads.undecorated())).toEqual(['primary', 'primary']);
  });

  it('inside @Transactional() both share the transaction of db.query: one txid_current(), one backend, @ReadOnly() inside included', async () => {
    const { txids, wheres } = await app.get(QbReads).inTransaction();
    expect(new Set(txids).size).toBe(1);
    expect(wheres.map((w) => w.node)).toEqual(['primary', 'primary', 'primary', 'primary', 'primary']);
    expect(new Set(wheres.map((w) => w.pid)).size).toBe(1);
    // The transaction ended: a new statement gets a new transaction id.
    const after = (await app.get(DatabaseService).primary.query<{ txid: string }>('SELECT txid_current()::text AS txid')).rows[0]!.txid;
    expect(after).not.toBe(txids[0]);
  });
});

describe('Kysely and Drizzle reads while a replica is stopped (real server stopped and started)', () => {
  let app: INestApplication | undefined;
  let subscription: Subscription | undefined;
  let load: ReadLoad | undefined;

  afterAll(async () => {
    await load?.stop();
    subscription?.unsubscribe();
    await app?.close();
  }, 60_000);

  it('stop replica1: 0 failed reads, every read goes to replica2 while it is down, and to both again once it is back', async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [
        moduleFor({
          routing: { replicaBanMs: 300, lagCheckIntervalMs: 60_000, maxReplicationLagMs: 0 },
          breaker: { failureThreshold: 3, resetTimeoutMs: 500 },
          acquireTimeoutMs: 2000,
        }),
      ],
    }).compile();
    app = moduleRef.createNestApplication({ logger: false });
    await app.init();
    const events: PoolEvent[] = [];
    subscription = app.get(DatabaseService).events$.subscribe((e) => events.push(e));
    const ofType = (type: PoolEvent['type'], node: string) => events.filter((e) => e.type === type && e.node === node);

    const reads = app.get(QbReads);

    load = new ReadLoad((i) => (i % 2 === 0 ? reads.kyselyRead() : reads.drizzleRead()));
    expect(tally(await load.next(60, 'reads before the stop'))).toMatchObject({ primary: 0 });
    try {
      await clusterCtl('node-stop', 'replica1', 'immediate');
      await waitFor('replica1 to be banned', () => ofType('replica-banned', 'replica1').length > 0, 10_000, 25);
      expect(tally(await load.next(100, 'reads while replica1 is down'))).toEqual({ primary: 0, replica1: 0, replica2: 100 });
    } finally {
      await clusterCtl('node-start', 'replica1');
    }
    await waitFor('replica1 to be restored by the probe', () => ofType('replica-restored', 'replica1').length > 0, 10_000, 25);
    await waitFor('reads to reach replica1 again', async () => (await load!.next(20, 'reads after the restart')).includes('replica1'), 10_000, 25);
    await load.stop();
    expect(load.failures).toEqual([]);
    expect(load.served.length).toBeGreaterThan(180);
  });
});
