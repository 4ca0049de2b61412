import { jest } from '@jest/globals';
import type { SpiedFunction } from 'jest-mock';
import { Controller, Get, Injectable, Logger, Module, Param, ParseIntPipe, Post, type INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { from, Observable, switchMap, timer } from 'rxjs';
import request from 'supertest';
import { DatabaseService, PoolModule, ReadOnly, ReadOnlyInTransactionError, Transactional } from 'nestjs-pg-pools';
import { adminQuery } from '../support/cluster.js';
import { expectNoSessionsLeft } from '../support/sessions.js';
import { sleep } from '../support/wait.js';
import { adapters, createHttpApp, routingOptions, useReplicatedTable, waitForReplay, where, type Where } from '../support/routing.support.js';

// The request scope on the real primary + 2 replicas, on Express and on Fastify: which server
// answers (inet_server_port(), pg_is_in_recovery()) under @ReadOnly() handlers and provider
// methods across awaits and Observables, undecorated and @Transactional code, nested scopes,
// the db.primary / db.replica escape hatches, a forgotten @ReadOnly() on a write, and the
// consistency header's validation.

const APP = 'e2e-routing-scope';
const TABLE = 'routing_scope_e2e';
const REPLICAS = ['replica1', 'replica2'];

@Injectable()
class ScopeReads {
  constructor(readonly db: DatabaseService) {}

  where(): Promise<Where> {
    return where(this.db);
  }

  @ReadOnly()
  async acrossAwaits(): Promise<Where[]> {
    const first = await this.where();
    await sleep(5);
    const second = await new Promise<Where>((resolve, reject) => setTimeout(() => this.where().then(resolve, reject), 5));
    await new Promise((resolve) => setImmediate(resolve));
    const [third, fourth] = await Promise.all([this.where(), this.where()]);
    return [first, second, third!, fourth!];
  }

  @ReadOnly()
  async one(): Promise<Where> {
    await sleep(1);
    return this.where();
  }

  @ReadOnly()
  observe(): Observable<Where> {
    return timer(5).pipe(switchMap(() => from(this.where())));
  }

  @Transactional()
  async transactional(): Promise<{ first: Where; readOnly: Where; last: Where; escape: Where }> {
    const first = await this.where();
    const readOnly = await this.one();
    const escape = await where(this.db.primary);
    const last = await this.where();
    return { first, readOnly, last, escape };
  }

  @ReadOnly()
  async forgottenWrite(id: number): Promise<void> {
    await this.db.query(`INSERT INTO ${TABLE} (id) VALUES ($1)`, [id]);
  }
}

@Controller('scope')
class ScopeController {
  constructor(
    private readonly reads: ScopeReads,
    private readonly db: DatabaseService,
  ) {}

  @Get('primary')
  async primary(): Promise<Where[]> {
    const first = await where(this.db);
    await sleep(3);
    return [first, await where(this.db)];
  }

  @ReadOnly()
  @Get('replica')
  async replica(): Promise<Where[]> {
    const inHandler = await where(this.db);
    await sleep(3);
    const fromService = await this.reads.acrossAwaits();
    const later = await new Promise<Where>((resolve, reject) => setTimeout(() => where(this.db).then(resolve, reject), 3));
    return [inHandler, ...fromService, later];
  }

  @ReadOnly()
  @Get('observable')
  observable(): Observable<Where> {
    return timer(5).pipe(switchMap(() => from(where(this.db))));
  }

  @Get('service-observable')
  serviceObservable(): Observable<Where> {
    return this.reads.observe();
  }

  @Get('nested')
  async nested(): Promise<Where[]> {
    const before = await where(this.db);
    const inner = await this.reads.one();
    const after = await where(this.db);
    return [before, inner, after];
  }

  @ReadOnly()
  @Get('nested-transaction')
  async nestedTransaction(): Promise<{ before: Where; tx: Awaited<ReturnType<ScopeReads['transactional']>>; after: Where }> {
    const before = await where(this.db);
    const tx = await this.reads.transactional();
    const after = await where(this.db);
    return { before, tx, after };
  }

  @Transactional()
  @Get('transactional')
  transactional(): Promise<Where[]> {
    return Promise.all([where(this.db), this.reads.one()]);
  }

  @ReadOnly()
  @Get('escape')
  async escape(): Promise<Where[]> {
    return [await where(this.db.primary), await where(this.db.replica), await where(this.db)];
  }

  @Get('escape-replica')
  async escapeReplica(): Promise<Where[]> {
    return [await where(this.db.replica), await this.db.replica.withClient(async (c) => where(c)), await where(this.db)];
  }

  @Post('forgotten/:id')
  async forgotten(@Param('id', ParseIntPipe) id: number): Promise<void> {
    await this.reads.forgottenWrite(id);
  }
}

// consistency 'eventual': these cases are about which scope a statement runs in. Under
// read-your-writes a read after a primary statement may rightly go to the primary while a replica
// replays the last WAL record (the bgwriter logs one every 15 s); routing-lag.e2e-spec.ts covers that.
@Module({
  imports: [PoolModule.forRoot(routingOptions(APP, { routing: { readOnlyInTransaction: 'warn', consistency: 'eventual' } }))],
  controllers: [ScopeController],
  providers: [ScopeReads],
})
class ScopeModule {}

const onReplica = (w: Where) => REPLICAS.includes(w.node) && w.recovery === true;
const onPrimary = (w: Where) => w.node === 'primary' && w.recovery === false;

// The forgotten-write case must meet the table on whichever replica it lands on.
useReplicatedTable(TABLE, 'id int PRIMARY KEY');

describe.each(adapters)('request scope on %s', (adapter) => {
  let app: INestApplication;
  let warn: SpiedFunction<Logger['warn']>;

  beforeAll(async () => {
    warn = jest.spyOn(Logger.prototype, 'warn');
    app = await createHttpApp(ScopeModule, adapter);
  }, 20_000);

  afterAll(async () => {
    warn.mockRestore();
    await app?.close();
    await expectNoSessionsLeft(APP);
  }, 20_000);

  const http = () => request(app.getHttpServer());

  it('sends undecorated handlers to the primary, across awaits', async () => {
    const body: Where[] = (await http().get('/scope/primary').expect(200)).body;
    expect(body).toHaveLength(2);
    expect(body.every(onPrimary)).toBe(true);
  });

  it('sends a @ReadOnly() handler and everything it calls to replicas, across timers, await chains and Promise.all', async () => {
    const body: Where[] = (await http().get('/scope/replica').expect(200)).body;
    expect(body).toHaveLength(6);
    expect(body.filter(onReplica)).toHaveLength(6);
  });

  it('keeps the scope for an Observable-returning @ReadOnly() handler and provider method', async () => {
    expect(onReplica((await http().get('/scope/observable').expect(200)).body)).toBe(true);
    expect(onReplica((await http().get('/scope/service-observable').expect(200)).body)).toBe(true);
  });

  it('keeps concurrent requests apart: 40 interleaved primary and replica requests each land on their side', async () => {
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        i % 2 === 0
          ? http().get('/scope/primary').expect(200).then((r) => (r.body as Where[]).every(onPrimary))
          : http().get('/scope/replica').expect(200).then((r) => (r.body as Where[]).every(onReplica)),
      ),
    );
    expect(results.filter(Boolean)).toHaveLength(40);
  });

  it('nests: an inner @ReadOnly() method in a primary scope reads from a replica, and the outer scope stays on the primary', async () => {
    const [before, inner, after] = (await http().get('/scope/nested').expect(200)).body as Where[];
    expect(onPrimary(before!)).toBe(true);
    expect(onReplica(inner!)).toBe(true);
    expect(onPrimary(after!)).toBe(true);
  });

  it('runs @Transactional() handlers on one primary client; a @ReadOnly() call inside joins it and warns once', async () => {
    warn.mockClear();
    const [first, readOnly] = (await http().get('/scope/transactional').expect(200)).body as Where[];
    expect(onPrimary(first!)).toBe(true);
    expect(readOnly).toEqual(first);
    const warnings = warn.mock.calls.map((c) => String(c[0])).filter((m) => m.includes('inside a transaction'));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain('uses the transaction\'s primary client');
  });

  it('runs a @Transactional() method called from a @ReadOnly() handler on the primary, then returns to a replica', async () => {
    const { before, tx, after } = (await http().get('/scope/nested-transaction').expect(200)).body as {
      before: Where;
      tx: { first: Where; readOnly: Where; last: Where; escape: Where };
      after: Where;
    };
    expect(onReplica(before)).toBe(true);
    expect(onPrimary(tx.first)).toBe(true);
    expect(tx.readOnly).toEqual(tx.first);
    expect(tx.last).toEqual(tx.first);
    expect(tx.escape).toEqual(tx.first);
    expect(onReplica(after)).toBe(true);
  });

  it('forces a side with db.primary / db.replica whatever the scope says', async () => {
    const [primary, replica, scoped] = (await http().get('/scope/escape').expect(200)).body as Where[];
    expect(onPrimary(primary!)).toBe(true);
    expect(onReplica(replica!)).toBe(true);
    expect(onReplica(scoped!)).toBe(true);
    const [replica2, replicaClient, scoped2] = (await http().get('/scope/escape-replica').expect(200)).body as Where[];
    expect(onReplica(replica2!)).toBe(true);
    expect(onReplica(replicaClient!)).toBe(true);
    expect(onPrimary(scoped2!)).toBe(true);
  });

  it('rejects a forgotten @ReadOnly() on a write with 25006 and a clear message, and writes nothing anywhere', async () => {
    const id = adapter === 'express' ? 1 : 2;
    await http().post(`/scope/forgotten/${id}`).expect(500);
    const reads = app.get(ScopeReads);
    const error = await reads.forgottenWrite(id).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(error).toMatchObject({ code: '25006' });
    expect((error as Error).message).toMatch(/^cannot execute INSERT in a read-only transaction — Cannot write on read replica "default\/replica[12]" because/);
    expect((error as Error).message).toContain('Please make sure that methods which write are not decorated with @ReadOnly()');
    await waitForReplay('replica1');
    await waitForReplay('replica2');
    for (const node of ['primary', 'replica1', 'replica2'] as const) {
      expect(await adminQuery(node, `SELECT id FROM ${TABLE} WHERE id = $1`, [id])).toEqual([]);
    }
  });

  it('answers 400 with a clear message to a malformed consistency header, and accepts a valid one', async () => {
    const res = await http().get('/scope/replica').set('x-pg-consistency-token', 'not-a-token').expect(400);
    expect(res.body.message).toBe(
      'Cannot read the x-pg-consistency-token header because it is not a consistency token: expected a WAL position such as "0/16B3748" (default database) ' +
        'or "<database>:0/16B3748", several joined by ",", got "not-a-token". Please make sure that the client sends back the value db.consistencyToken() returned, unchanged.',
    );
    const ok = (await http().get('/scope/replica').set('x-pg-consistency-token', '0/1').expect(200)).body as Where[];
    expect(ok.every(onReplica)).toBe(true);
  });
});

describe('readOnlyInTransaction: "throw" (no HTTP: provider methods as a job would call them)', () => {
  @Injectable()
  class Jobs {
    constructor(readonly db: DatabaseService) {}

    @ReadOnly()
    report(): Promise<Where> {
      return where(this.db);
    }

    @Transactional()
    async reportInTransaction(): Promise<Where> {
      return this.report();
    }

    @Transactional({ readOnly: true })
    async reportInReadOnlyTransaction(): Promise<Where> {
      return this.report();
    }

    @Transactional()
    async outer(id: number, fail: boolean): Promise<{ outer: Where; joined: Where; fresh: Where }> {
      const outer = await where(this.db);
      const joined = await this.joined();
      const fresh = await this.fresh(id);
      await this.db.query(`INSERT INTO ${TABLE} (id) VALUES ($1)`, [id + 1]);
      if (fail) throw new Error('outer transaction fails after the requiresNew one committed');
      return { outer, joined, fresh };
    }

    @Transactional()
    joined(): Promise<Where> {
      return where(this.db);
    }

    @Transactional({ propagation: 'requiresNew' })
    async fresh(id: number): Promise<Where> {
      await this.db.query(`INSERT INTO ${TABLE} (id) VALUES ($1)`, [id]);
      return where(this.db);
    }
  }

  @Module({ imports: [PoolModule.forRoot(routingOptions(`${APP}-throw`, { routing: { readOnlyInTransaction: 'throw' } }))], providers: [Jobs] })
  class ThrowModule {}

  let app: INestApplication;

  beforeAll(async () => {
    const moduleRef = await Test.createTestingModule({ imports: [ThrowModule] }).compile();
    app = moduleRef.createNestApplication({ logger: false });
    await app.init();
  }, 20_000);

  afterAll(async () => {
    await app?.close();
    await expectNoSessionsLeft(`${APP}-throw`);
  });

  it('reads from a replica outside any request, and refuses @ReadOnly() inside a read-write transaction', async () => {
    const jobs = app.get(Jobs);
    expect(onReplica(await jobs.report())).toBe(true);
    await expect(jobs.reportInTransaction()).rejects.toThrow(ReadOnlyInTransactionError);
    await expect(jobs.reportInTransaction()).rejects.toThrow(
      'Cannot run a @ReadOnly() scope on a replica of "default" because it is inside a transaction. ' +
        'Please make sure that read-only work is called outside the transaction, or set routing.readOnlyInTransaction to "join".',
    );
    expect(onPrimary(await jobs.reportInReadOnlyTransaction())).toBe(true);
  });

  it('nested @Transactional() joins the outer transaction; requiresNew runs on its own client and commits on its own', async () => {
    const jobs = app.get(Jobs);
    const ids = async (from: number) => (await adminQuery<{ id: number }>('primary', `SELECT id FROM ${TABLE} WHERE id IN ($1, $2) ORDER BY id`, [from, from + 1])).map((r) => r.id);
    const ok = await jobs.outer(100, false);
    expect(onPrimary(ok.outer)).toBe(true);
    expect(ok.joined).toEqual(ok.outer);
    expect(onPrimary(ok.fresh)).toBe(true);
    expect(ok.fresh.pid).not.toBe(ok.outer.pid);
    expect(await ids(100)).toEqual([100, 101]);
    await expect(jobs.outer(200, true)).rejects.toThrow('outer transaction fails after the requiresNew one committed');
    expect(await ids(200)).toEqual([200]);
    const primaryPool = app.get(DatabaseService).primary.pool;
    expect(primaryPool.totalCount - primaryPool.idleCount).toBe(0);
  });
});
