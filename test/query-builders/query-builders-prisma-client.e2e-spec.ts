import { jest } from '@jest/globals';
import { Body, Controller, Injectable, Module, Post, type INestApplication } from '@nestjs/common';
import { PrismaPg } from '@prisma/adapter-pg';
import request from 'supertest';
import { DatabaseService, PoolModule, ReadOnly, Transactional, type PoolModuleRootOptions } from 'nestjs-pg-pools';
import { adminQuery, type PgNodeName } from '../support/cluster.js';
import { waitForNoSessions } from '../support/sessions.js';
import { waitFor } from '../support/wait.js';
import { createHttpApp, routingOptions, serverAt, tally, useReplicatedTable, waitForReplay } from '../support/routing.support.js';
import { PrismaClient } from '../prisma/generated/client.js';

// The real generated Prisma Client (Prisma 7, `prisma-client` generator, no engine: generated
// offline from test/prisma/schema.prisma by scripts/prisma-generate.sh) on new PrismaPg(db.routedPool):
// reads under @ReadOnly() on the replicas, prisma.$transaction on one primary client, Prisma joining
// a library transaction (and its own $transaction nesting in it), and read-your-writes with a replica
// that applies WAL 3 s late.

const APP = 'e2e-query-builders-prisma-client';
const TABLE = 'prisma_client_e2e';
const DELAY = '3s';

jest.setTimeout(60_000);

type Where = { port: number; recovery: boolean; txid: string | null };

async function whereVia(prisma: Pick<PrismaClient, '$queryRaw'>): Promise<{ node: PgNodeName; recovery: boolean; txid: string | null }> {
  const [row] = await prisma.$queryRaw<Where[]>`SELECT inet_server_port() AS port, pg_is_in_recovery() AS recovery, txid_current_if_assigned()::text AS txid`;
  return { node: serverAt(row!.port), recovery: row!.recovery, txid: row!.txid };
}

/** The provider an app would write: one PrismaClient on the module's routed pool. */
@Injectable()
class Prisma {
  readonly client: PrismaClient;
  constructor(db: DatabaseService) {
    this.client = new PrismaClient({ adapter: new PrismaPg(db.routedPool) });
  }
}

@Injectable()
class Notes {
  constructor(
    private readonly prisma: Prisma,
    readonly db: DatabaseService,
  ) {}

  @ReadOnly()
  where() {
    return whereVia(this.prisma.client);
  }

  @ReadOnly()
  async find(id: number): Promise<{ found: boolean; node: PgNodeName }> {
    const note = await this.prisma.client.note.findUnique({ where: { id } });
    return { found: note !== null, node: (await whereVia(this.prisma.client)).node };
  }

  /** A library transaction whose statements Prisma makes: they run on its client and roll back with it. */
  @Transactional()
  async createThenFail(id: number): Promise<never> {
    await this.prisma.client.note.create({ data: { id, title: 'in a library transaction' } });
    const inside = await whereVia(this.prisma.client);
    const library = (await this.db.query<{ txid: string }>('SELECT txid_current()::text AS txid')).rows[0]!.txid;
    throw Object.assign(new Error('roll it back'), { inside, library });
  }

  /** Prisma's own $transaction inside a library transaction: a savepoint of it. */
  @Transactional()
  async nested(id: number): Promise<{ outer: string; inner: string | null }> {
    const outer = (await this.db.query<{ txid: string }>('SELECT txid_current()::text AS txid')).rows[0]!.txid;
    const inner = await this.prisma.client.$transaction(async (tx) => {
      await tx.note.create({ data: { id, title: 'nested' } });
      return (await whereVia(tx)).txid;
    });
    return { outer, inner };
  }
}

@Controller('notes')
class NotesController {
  constructor(
    private readonly prisma: Prisma,
    private readonly notes: Notes,
  ) {}

  /** Create with Prisma, then read it back through a @ReadOnly() method, in one request. */
  @Post('insert-then-read')
  async insertThenRead(@Body() body: { id: number }): Promise<{ found: boolean; node: PgNodeName }> {
    await this.prisma.client.note.create({ data: { id: body.id, title: 'read your writes' } });
    return this.notes.find(body.id);
  }
}

function moduleFor(extra: Partial<PoolModuleRootOptions> = {}) {
  @Module({ imports: [PoolModule.forRoot(routingOptions(APP, extra))], controllers: [NotesController], providers: [Prisma, Notes] })
  class PrismaClientModule {}
  return PrismaClientModule;
}

const ids = async () => (await adminQuery<{ id: number }>('primary', `SELECT id FROM ${TABLE} ORDER BY id`, [], { as: 'app' })).map((r) => r.id);
let nextId = 1;

useReplicatedTable(TABLE, 'id int PRIMARY KEY, title text NOT NULL');

afterAll(async () => {
  await waitForNoSessions(APP, { timeoutMs: 5000, everyMs: 50 });
});

describe('the generated Prisma Client on new PrismaPg(db.routedPool)', () => {
  let app: INestApplication;
  let prisma: PrismaClient;
  let notes: Notes;

  beforeAll(async () => {
    app = await createHttpApp(moduleFor({ routing: { lagCheckIntervalMs: 60_000 } }), 'express');
    prisma = app.get(Prisma).client;
    notes = app.get(Notes);
  });

  afterAll(async () => {
    await prisma?.$disconnect();
    await app?.close();
  });

  it('reads under @ReadOnly() answer from the replicas (pg_is_in_recovery() true), the rest from the primary', async () => {
    const reads = [];
    for (let i = 0; i < 6; i++) reads.push(await notes.where());
    expect(reads.every((r) => r.recovery)).toBe(true);
    expect(new Set(reads.map((r) => r.node))).toEqual(new Set(['replica1', 'replica2']));
    expect(await whereVia(prisma)).toMatchObject({ node: 'primary', recovery: false });
    const id = nextId++;
    await prisma.note.create({ data: { id, title: 'written' } });
    expect(await ids()).toContain(id);
  });

  it('prisma.$transaction runs on one primary client: one transaction id, committed together, rolled back together', async () => {
    const [a, b] = [nextId++, nextId++];
    const seen = await prisma.$transaction(async (tx) => {
      await tx.note.create({ data: { id: a, title: 'tx' } });
      const first = await whereVia(tx);
      await tx.note.create({ data: { id: b, title: 'tx' } });
      return [first, await whereVia(tx)];
    });
    expect(seen.map((s) => s.node)).toEqual(['primary', 'primary']);
    expect(seen[0]!.txid).not.toBeNull();
    expect(seen[1]!.txid).toBe(seen[0]!.txid);
    expect(await ids()).toEqual(expect.arrayContaining([a, b]));

    const c = nextId++;
    await expect(
      prisma.$transaction(async (tx) => {
        await tx.note.create({ data: { id: c, title: 'tx' } });
        throw new Error('undo');
      }),
    ).rejects.toThrow('undo');
    expect(await ids()).not.toContain(c);
    // The batch form too.
    const [d, e] = [nextId++, nextId++];
    await prisma.$transaction([prisma.note.create({ data: { id: d, title: 'batch' } }), prisma.note.create({ data: { id: e, title: 'batch' } })]);
    expect(await ids()).toEqual(expect.arrayContaining([d, e]));
  });

  it('joins a library transaction: its statements run on the transaction’s client and roll back with it', async () => {
    const id = nextId++;
    const err = (await notes.createThenFail(id).catch((e: unknown) => e)) as { message: string; inside: { node: string; txid: string }; library: string };
    expect(err.message).toBe('roll it back');
    expect(err.inside.node).toBe('primary');
    expect(err.inside.txid).toBe(err.library);
    expect(await ids()).not.toContain(id);
  });

  it('prisma.$transaction inside a library transaction nests in it (same transaction id) and commits with it', async () => {
    const id = nextId++;
    const { outer, inner } = await notes.nested(id);
    expect(inner).toBe(outer);
    expect(await ids()).toContain(id);
  });

  it('leaves no client checked out', async () => {
    const db = app.get(DatabaseService);
    await waitFor('every client back', () => db.primary.pool.totalCount - db.primary.pool.idleCount === 0, 3000, 20);
  });
});

describe('read-your-writes with replica1 applying WAL 3 s late (maxReplicationLagMs: 0, so it stays in rotation)', () => {
  beforeAll(async () => {
    await adminQuery('replica1', `ALTER SYSTEM SET recovery_min_apply_delay = '${DELAY}'`);
    await adminQuery('replica1', 'SELECT pg_reload_conf()');
    await waitFor('the delay to apply on replica1', async () => (await adminQuery('replica1', 'SHOW recovery_min_apply_delay'))[0]!.recovery_min_apply_delay === DELAY, 5000, 25);
  });

  afterAll(async () => {
    await adminQuery('replica1', 'ALTER SYSTEM RESET recovery_min_apply_delay');
    await adminQuery('replica1', 'SELECT pg_reload_conf()');
    await waitForReplay('replica1');
    expect((await adminQuery('replica1', 'SHOW recovery_min_apply_delay'))[0]!.recovery_min_apply_delay).toBe('0');
  }, 30_000);

  async function insertThenRead(consistency: 'read-your-writes' | 'eventual', count: number): Promise<Array<{ found: boolean; node: PgNodeName }>> {
    const app = await createHttpApp(moduleFor({ routing: { maxReplicationLagMs: 0, consistency, lagCheckIntervalMs: 200 } }), 'express');
    const prisma = app.get(Prisma).client;
    try {
      const results = [];
      for (let i = 0; i < count; i++) results.push((await request(app.getHttpServer()).post('/notes/insert-then-read').send({ id: nextId++ }).expect(201)).body);
      return results;
    } finally {
      await prisma.$disconnect();
      await app.close();
    }
  }

  it('control: with consistency "eventual", a row Prisma just created is missing on the delayed replica', async () => {
    const results = await insertThenRead('eventual', 10);
    expect(results.filter((r) => !r.found).length).toBeGreaterThanOrEqual(1);
  });

  it('with read-your-writes, the row Prisma just created is found in 30 of 30 requests, never on the delayed replica', async () => {
    const results = await insertThenRead('read-your-writes', 30);
    expect(results.filter((r) => !r.found)).toEqual([]);
    expect(tally(results.map((r) => r.node)).replica1).toBe(0);
  });
});
