import { jest } from '@jest/globals';
import { Injectable, Module, type INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { PrismaPg } from '@prisma/adapter-pg';
import { DatabaseService, PoolModule, ReadOnly } from 'nestjs-pg-pools';
import { adminQuery } from '../support/cluster.js';
import { expectNoSessionsLeft } from '../support/sessions.js';
import { routingOptions, serverAt } from '../support/routing.support.js';

// Prisma 7's pg driver adapter (@prisma/adapter-pg, the real package) on db.routedPool, driven the
// way the Prisma Client drives it: queryRaw / executeRaw, and startTransaction() + COMMIT /
// ROLLBACK + commit() / rollback(). The generated Prisma Client on it: query-builders-prisma-client.e2e-spec.ts.

const APP = 'e2e-query-builders-prisma';
const TABLE = 'qb_prisma_e2e';

jest.setTimeout(30_000);

type Adapter = Awaited<ReturnType<PrismaPg['connect']>>;
const raw = (sql: string) => ({ sql, args: [], argTypes: [] });

async function whereVia(adapter: Pick<Adapter, 'queryRaw'>): Promise<{ node: string; recovery: boolean; txid: string }> {
  const res = await adapter.queryRaw(raw('SELECT inet_server_port() AS port, pg_is_in_recovery() AS recovery, txid_current_if_assigned()::text AS txid'));
  const [port, recovery, txid] = res.rows[0] as [number, boolean, string];
  return { node: serverAt(port), recovery, txid };
}

@Injectable()
class PrismaReads {
  adapter!: Adapter;

  @ReadOnly()
  where() {
    return whereVia(this.adapter);
  }
}

@Module({ imports: [PoolModule.forRoot(routingOptions(APP))], providers: [PrismaReads] })
class PrismaModule {}

let app: INestApplication;
let adapter: Adapter;

beforeAll(async () => {
  await adminQuery('primary', `DROP TABLE IF EXISTS ${TABLE}; CREATE TABLE ${TABLE} (id int PRIMARY KEY)`, [], { as: 'app' });
  const moduleRef = await Test.createTestingModule({ imports: [PrismaModule] }).compile();
  app = moduleRef.createNestApplication({ logger: false });
  await app.init();
  adapter = await new PrismaPg(app.get(DatabaseService).routedPool).connect();
  app.get(PrismaReads).adapter = adapter;
});

afterAll(async () => {
  await adapter?.dispose();
  await app?.close();
  await expectNoSessionsLeft(APP);
  await adminQuery('primary', `DROP TABLE IF EXISTS ${TABLE}`, [], { as: 'app' });
});

const ids = async () => (await adminQuery<{ id: number }>('primary', `SELECT id FROM ${TABLE} ORDER BY id`, [], { as: 'app' })).map((r) => r.id);

describe('@prisma/adapter-pg on db.routedPool', () => {
  it('takes db.routedPool as its pg.Pool (not as a config) and reads from the replicas under @ReadOnly(), from the primary otherwise', async () => {
    const reads = app.get(PrismaReads);
    const nodes = [];
    for (let i = 0; i < 6; i++) nodes.push((await reads.where()).node);
    expect(nodes.filter((n) => n === 'primary')).toEqual([]);
    expect(new Set(nodes)).toEqual(new Set(['replica1', 'replica2']));
    expect(await whereVia(adapter)).toMatchObject({ node: 'primary', recovery: false });
  });

  it('startTransaction(): its statements share one primary transaction; COMMIT keeps them, ROLLBACK drops them', async () => {
    const tx = await adapter.startTransaction();
    await tx.executeRaw(raw(`INSERT INTO ${TABLE} (id) VALUES (1)`));
    const [a, b] = [await whereVia(tx), await whereVia(tx)];
    expect(a).toMatchObject({ node: 'primary' });
    expect(a.txid).toBe(b.txid);
    expect(a.txid).not.toBeNull();
    await tx.executeRaw(raw('COMMIT'));
    await tx.commit();

    const rolled = await adapter.startTransaction('SERIALIZABLE');
    await rolled.executeRaw(raw(`INSERT INTO ${TABLE} (id) VALUES (2)`));
    await rolled.executeRaw(raw('ROLLBACK'));
    await rolled.rollback();
    expect(await ids()).toEqual([1]);
  });
});
