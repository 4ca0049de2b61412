import { jest } from '@jest/globals';
import { Body, Controller, Get, Injectable, Module, Param, ParseIntPipe, Post, type INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import request from 'supertest';
import { DatabaseService, PoolModule, ReadOnly, type PoolModuleRootOptions } from 'nestjs-pg-pools';
import { adminQuery, type PgNodeName } from '../support/cluster.js';
import { expectNoSessionsLeft } from '../support/sessions.js';
import { sleep, waitFor } from '../support/wait.js';
import { adapters, createHttpApp, delayReplay, routingOptions, serverAt, tally, undoDelayReplay, waitForReplay, where } from '../support/routing.support.js';

// Lag-aware selection and read-your-writes on the real cluster. replica1 gets
// recovery_min_apply_delay = '3s' (ALTER SYSTEM on the standby + pg_reload_conf(), reset in
// afterAll), so everything committed on the primary shows up there 3 s later:
// - with maxReplicationLagMs 1000 and a steady write load, replica1 gets no reads while it lags;
// - with the lag filter off (replica1 stays in rotation), insert-then-read in one request and a
//   consistency token carried from a POST to the next GET still return the new row every time,
//   on Express and on Fastify; the same requests without read-your-writes / without the token
//   miss rows, which shows the delayed replica really is in play.

const APP = 'e2e-routing-lag';
const TABLE = 'routing_lag_e2e';
const DELAY = '3s';

jest.setTimeout(30_000);

let nextId = 1;

@Injectable()
class Items {
  constructor(readonly db: DatabaseService) {}

  insert(id: number): Promise<unknown> {
    return this.db.query(`INSERT INTO ${TABLE} (id, note) VALUES ($1, 'e2e')`, [id]);
  }

  @ReadOnly()
  async find(id: number): Promise<{ found: boolean; node: PgNodeName }> {
    const res = await this.db.query<{ port: number; found: boolean }>(`SELECT inet_server_port() AS port, EXISTS (SELECT 1 FROM ${TABLE} WHERE id = $1) AS found`, [id]);
    return { found: res.rows[0]!.found, node: serverAt(res.rows[0]!.port) };
  }
}

@Controller('items')
class ItemsController {
  constructor(
    private readonly items: Items,
    private readonly db: DatabaseService,
  ) {}

  /** Insert, then read it back through a @ReadOnly() method, in one request. */
  @Post('insert-then-read')
  async insertThenRead(@Body() body: { id: number }): Promise<{ found: boolean; node: PgNodeName }> {
    await this.items.insert(body.id);
    return this.items.find(body.id);
  }

  /** Insert and hand out the consistency token for the next request. */
  @Post()
  async create(@Body() body: { id: number }): Promise<{ token: string | undefined }> {
    await this.items.insert(body.id);
    return { token: await this.db.consistencyToken() };
  }

  @ReadOnly()
  @Get(':id')
  show(@Param('id', ParseIntPipe) id: number): Promise<{ found: boolean; node: PgNodeName }> {
    return this.items.find(id);
  }
}

function moduleFor(extra: Partial<PoolModuleRootOptions>) {
  @Module({ imports: [PoolModule.forRoot(routingOptions(APP, extra))], controllers: [ItemsController], providers: [Items] })
  class LagModule {}
  return LagModule;
}

function replicaState(app: INestApplication, index: number): { lagMs: number | undefined; lagBytes: number | undefined } {
  const cluster = (app.get(DatabaseService) as unknown as { cluster: { replicas: Array<{ lagMs: number | undefined; lagBytes: number | undefined }> } }).cluster;
  return cluster.replicas[index]!;
}

beforeAll(async () => {
  await adminQuery('primary', `DROP TABLE IF EXISTS ${TABLE}; CREATE TABLE ${TABLE} (id int PRIMARY KEY, note text)`, [], { as: 'app' });
  await waitForReplay('replica1');
  await delayReplay('replica1', DELAY);
}, 30_000);

afterAll(async () => {
  await undoDelayReplay('replica1', TABLE);
  await expectNoSessionsLeft(APP);
}, 60_000);

describe('lag-aware selection (maxReplicationLagMs: 1000, replica1 applies WAL 3 s late)', () => {
  it('sends no reads to the lagging replica under a steady write load, and takes it back once it caught up', async () => {
    const moduleRef = await Test.createTestingModule({ imports: [moduleFor({ routing: { maxReplicationLagMs: 1000, lagCheckIntervalMs: 200 } })] }).compile();
    const app = moduleRef.createNestApplication({ logger: false });
    await app.init();
    try {
      await lagThenCatchUp(app);
    } finally {
      // Closed whatever an assertion found: a left-over session would fail the whole file.
      await app.close();
    }
  });
});

/** Reads under a steady write load with replica1 behind, then after the load stops. */
async function lagThenCatchUp(app: INestApplication): Promise<void> {
  const items = app.get(Items);
  const db = app.get(DatabaseService);
  let writing = true;
  const writes = (async () => {
    const deadline = Date.now() + 20_000;
    while (writing && Date.now() < deadline) {
      await items.insert(nextId++);
      await sleep(20);
    }
  })();
  try {
    await waitFor('replica1 to be measured beyond 1000 ms of lag', () => (replicaState(app, 0).lagMs ?? 0) > 1000, 8000, 20);
    const nodes: PgNodeName[] = [];
    const until = Date.now() + 1500;
    while (nodes.length < 300 || Date.now() < until) {
      nodes.push((await app.get(Items).find(0)).node);
      if (nodes.length % 20 === 0) await sleep(10);
    }
    expect(tally(nodes).replica1).toBe(0);
    expect(tally(nodes).replica2).toBe(nodes.length);
    const lag = replicaState(app, 0).lagMs!;
    expect(lag).toBeGreaterThan(1000);
    expect(lag).toBeLessThan(6000);
    expect(replicaState(app, 1).lagMs).toBeLessThan(1000);
  } finally {
    writing = false;
    await writes;
  }
  await waitFor('replica1 to catch up and get reads again', async () => (await where(db.replica)).node === 'replica1', 10_000, 50);
  // Reads come back once the lag is within 1000 ms; the reading is 0 once replica1 has replayed all the primary
  // had written at a check (every 200 ms), and commits still reach it 3 s late.
  await waitFor("replica1's lag reading to come back to 0", () => replicaState(app, 0).lagMs === 0, 10_000, 20);
  expect(replicaState(app, 0).lagMs).toBe(0);
}

describe('db.scope(): read-your-writes for code no request reaches (a cron job), replica1 3 s late', () => {
  it('inside db.scope() insert-then-read finds the row 50 of 50 times; the same calls outside any scope miss rows on replica1', async () => {
    const moduleRef = await Test.createTestingModule({ imports: [moduleFor({ routing: { maxReplicationLagMs: 0 } })] }).compile();
    const app = moduleRef.createNestApplication({ logger: false });
    await app.init();
    try {
      const items = app.get(Items);
      const db = app.get(DatabaseService);

      const unscoped: Array<{ found: boolean; node: PgNodeName }> = [];
      for (let i = 0; i < 10; i++) {
        const id = nextId++;
        await items.insert(id);
        unscoped.push(await items.find(id));
      }
      expect(unscoped.filter((r) => !r.found && r.node === 'replica1').length).toBeGreaterThanOrEqual(3);

      const scoped: Array<{ found: boolean; node: PgNodeName; token: string | undefined }> = [];
      for (let i = 0; i < 50; i++) {
        const id = nextId++;
        scoped.push(
          await db.scope(async () => {
            await items.insert(id);
            const read = await items.find(id);
            return { ...read, token: await db.consistencyToken() };
          }),
        );
      }
      expect(scoped.filter((r) => !r.found)).toEqual([]);
      expect(tally(scoped.map((r) => r.node)).replica1).toBe(0);
      expect(scoped.every((r) => /^[0-9A-F]{1,8}\/[0-9A-F]{1,8}$/.test(r.token ?? ''))).toBe(true);
      // A scope that wrote nothing and carried no token has no token to hand out.
      expect(await db.scope(async () => db.consistencyToken())).toBeUndefined();
    } finally {
      await app.close();
    }
  });
});

describe('read-your-writes with the lagging replica in rotation (maxReplicationLagMs: 0)', () => {
  it('control: with consistency "eventual", insert-then-read misses rows on the delayed replica', async () => {
    const app = await createHttpApp(moduleFor({ routing: { maxReplicationLagMs: 0, consistency: 'eventual' } }), 'express');
    try {
      const results = [];
      for (let i = 0; i < 10; i++) results.push((await request(app.getHttpServer()).post('/items/insert-then-read').send({ id: nextId++ }).expect(201)).body);
      expect(results.filter((r) => !r.found && r.node === 'replica1').length).toBeGreaterThanOrEqual(3);
    } finally {
      await app.close();
    }
  });

  describe.each(adapters)('on %s', (adapter) => {
    let app: INestApplication;

    beforeAll(async () => {
      app = await createHttpApp(moduleFor({ routing: { maxReplicationLagMs: 0 } }), adapter);
    });

    afterAll(async () => {
      await app?.close();
    });

    const http = () => request(app.getHttpServer());

    it('returns the just-inserted row in 100 of 100 insert-then-read requests', async () => {
      const results: Array<{ found: boolean; node: PgNodeName }> = [];
      for (let i = 0; i < 100; i++) results.push((await http().post('/items/insert-then-read').send({ id: nextId++ }).expect(201)).body);
      expect(results.filter((r) => !r.found)).toEqual([]);
      expect(tally(results.map((r) => r.node)).replica1).toBe(0);
    });

    it('a consistency token carried from the POST to the next GET returns the row in 100 of 100 pairs; without it, reads miss', async () => {
      const results: Array<{ found: boolean; node: PgNodeName }> = [];
      for (let i = 0; i < 100; i++) {
        const id = nextId++;
        const { token } = (await http().post('/items').send({ id }).expect(201)).body as { token: string };
        expect(token).toMatch(/^[0-9A-F]{1,8}\/[0-9A-F]{1,8}$/);
        results.push((await http().get(`/items/${id}`).set('x-pg-consistency-token', token).expect(200)).body);
      }
      expect(results.filter((r) => !r.found)).toEqual([]);
      expect(tally(results.map((r) => r.node)).replica1).toBe(0);

      // Tokens whose position replica2 has replayed (and replica1, 3 s late, has not): replica2 serves them.
      const later: Array<{ id: number; token: string }> = [];
      for (let i = 0; i < 5; i++) {
        const id = nextId++;
        later.push({ id, token: (await http().post('/items').send({ id }).expect(201)).body.token });
      }
      await waitForReplay('replica2');
      for (const { id, token } of later) {
        expect((await http().get(`/items/${id}`).set('x-pg-consistency-token', token).expect(200)).body).toEqual({ found: true, node: 'replica2' });
      }

      const misses: boolean[] = [];
      for (let i = 0; i < 10; i++) {
        const id = nextId++;
        await http().post('/items').send({ id }).expect(201);
        misses.push(!(await http().get(`/items/${id}`).expect(200)).body.found);
      }
      expect(misses.filter(Boolean).length).toBeGreaterThanOrEqual(3);
    });
  });
});
