import { jest } from '@jest/globals';
import { Injectable, Module, type INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import type { PoolClient } from 'pg';
import { DatabaseService, NoReplicaAvailableError, PoolModule, ReadOnly, type PoolModuleRootOptions, type ReplicaCandidate } from 'nestjs-pg-pools';
import { routingOptions, tally, where, type Where } from '../support/routing.support.js';
import { expectNoSessionsLeft } from '../support/sessions.js';

// Replica selection strategies on the real replicas: ≥ 300 reads each, counted by the server that
// answered (inet_server_port()), and the per-node routing counters that must agree with it.

const APP = 'e2e-routing-strategies';
const READS = 300;

@Injectable()
class Reports {
  constructor(readonly db: DatabaseService) {}

  @ReadOnly()
  async run(count: number): Promise<Where[]> {
    const out: Where[] = [];
    for (let i = 0; i < count; i++) out.push(await where(this.db));
    return out;
  }
}

async function start(extra: Partial<PoolModuleRootOptions>): Promise<INestApplication> {
  @Module({ imports: [PoolModule.forRoot(routingOptions(APP, extra))], providers: [Reports] })
  class StrategyModule {}
  const moduleRef = await Test.createTestingModule({ imports: [StrategyModule] }).compile();
  const app = moduleRef.createNestApplication({ logger: false });
  await app.init();
  return app;
}

function counters(db: DatabaseService) {
  const cluster = (db as unknown as { cluster: { primary: { counters: Record<string, number> }; replicas: Array<{ node: { name: string; counters: Record<string, number> } }> } }).cluster;
  return {
    primary: { ...cluster.primary.counters },
    replica1: { ...cluster.replicas[0]!.node.counters },
    replica2: { ...cluster.replicas[1]!.node.counters },
  };
}

jest.setTimeout(20_000);

describe('replica strategies (real replicas)', () => {
  let app: INestApplication | undefined;

  afterEach(async () => {
    await app?.close();
    app = undefined;
    await expectNoSessionsLeft(APP);
  });

  it('round-robin (default) alternates exactly between the replicas, and counts each read on its node', async () => {
    app = await start({});
    const db = app.get(DatabaseService);
    const before = counters(db);
    const nodes = (await app.get(Reports).run(READS)).map((w) => w.node);
    expect(tally(nodes)).toEqual({ primary: 0, replica1: READS / 2, replica2: READS / 2 });
    for (let i = 1; i < nodes.length; i++) expect(nodes[i]).not.toBe(nodes[i - 1]);
    const after = counters(db);
    expect(after.replica1.routedReads - before.replica1.routedReads).toBe(READS / 2);
    expect(after.replica2.routedReads - before.replica2.routedReads).toBe(READS / 2);
    expect(after.primary.routedReads - before.primary.routedReads).toBe(0);
    expect(after.primary.fallbacks - before.primary.fallbacks).toBe(0);
  });

  it('random spreads reads roughly evenly, in no fixed order', async () => {
    app = await start({ routing: { strategy: 'random' } });
    const nodes = (await app.get(Reports).run(READS)).map((w) => w.node);
    const counts = tally(nodes);
    expect(counts.primary).toBe(0);
    // Binomial(300, 0.5): sd ≈ 8.7, so 150 ± 45 is more than 5 sd.
    expect(counts.replica1).toBeGreaterThanOrEqual(105);
    expect(counts.replica1).toBeLessThanOrEqual(195);
    let repeats = 0;
    for (let i = 1; i < nodes.length; i++) if (nodes[i] === nodes[i - 1]) repeats++;
    expect(repeats).toBeGreaterThan(50);
  });

  it('weighted sends reads in exact proportion to the replicas\' weights (3:1: 300 and 100 of 400)', async () => {
    const options = routingOptions(APP, { routing: { strategy: 'weighted' } });
    options.replicas = [
      { ...options.replicas![0]!, weight: 3 },
      { ...options.replicas![1]!, weight: 1 },
    ];
    app = await start(options);
    const db = app.get(DatabaseService);
    const before = counters(db);
    const counts = tally((await app.get(Reports).run(400)).map((w) => w.node));
    // Smooth weighted round-robin is periodic (3 + 1 picks per cycle), so any 400 consecutive picks split exactly.
    expect(counts.primary).toBe(0);
    expect(counts.replica1).toBe(300);
    expect(counts.replica2).toBe(100);
    const after = counters(db);
    expect(after.replica1.routedReads - before.replica1.routedReads).toBe(counts.replica1);
    expect(after.replica2.routedReads - before.replica2.routedReads).toBe(counts.replica2);
  });

  it('least-busy prefers the idle replica while the other one is held busy, and uses both when idle', async () => {
    app = await start({ routing: { strategy: 'least-busy' } });
    const db = app.get(DatabaseService);
    const held: PoolClient[] = [];
    try {
      for (let i = 0; i < 2; i++) held.push(await db.replica.pools[0]!.connect());
      const busy = tally((await app.get(Reports).run(READS)).map((w) => w.node));
      expect(busy).toEqual({ primary: 0, replica1: 0, replica2: READS });
    } finally {
      for (const client of held.splice(0)) client.release();
    }
    for (let i = 0; i < 2; i++) held.push(await db.replica.pools[1]!.connect());
    try {
      const otherBusy = tally((await app.get(Reports).run(50)).map((w) => w.node));
      expect(otherBusy).toEqual({ primary: 0, replica1: 50, replica2: 0 });
    } finally {
      for (const client of held.splice(0)) client.release();
    }
    const idle = tally((await app.get(Reports).run(100)).map((w) => w.node));
    expect(idle.replica1).toBeGreaterThan(0);
    expect(idle.replica2).toBeGreaterThan(0);
  });

  it('a selector function picks among the usable replicas; undefined falls back to the primary; a foreign answer is an error', async () => {
    const seen: Array<readonly ReplicaCandidate[]> = [];
    let mode: 'second' | 'none' | 'foreign' = 'second';
    app = await start({
      routing: {
        strategy: (candidates) => {
          seen.push(candidates);
          if (mode === 'none') return undefined;
          if (mode === 'foreign') return { ...candidates[0]!, name: 'elsewhere' };
          return candidates.find((c) => c.name === 'replica2');
        },
      },
    });
    const db = app.get(DatabaseService);
    const reports = app.get(Reports);
    expect(tally((await reports.run(30)).map((w) => w.node))).toEqual({ primary: 0, replica1: 0, replica2: 30 });
    expect(seen[0]!.map((c) => c.name)).toEqual(['replica1', 'replica2']);
    expect(seen[0]![0]).toEqual({ name: 'replica1', weight: 1, inUse: 0, waiting: 0, idle: expect.any(Number), total: expect.any(Number), lagMs: expect.any(Number) });

    mode = 'none';
    const before = counters(db);
    expect(tally((await reports.run(10)).map((w) => w.node))).toEqual({ primary: 10, replica1: 0, replica2: 0 });
    const after = counters(db);
    expect(after.primary.fallbacks - before.primary.fallbacks).toBe(10);
    expect(after.primary.routedReads - before.primary.routedReads).toBe(10);

    mode = 'foreign';
    await expect(reports.run(1)).rejects.toThrow(
      'Cannot route a read on database "default" because the routing.strategy function returned an object named "elsewhere", which is not one of the candidates it was given (replica1, replica2). ' +
        'Please make sure that it returns one of its candidates, or undefined to use the primary.',
    );
  });

  it('with fallbackToPrimary: false, a selector that picks nothing gives NoReplicaAvailableError', async () => {
    app = await start({ routing: { strategy: () => undefined, fallbackToPrimary: false } });
    const error = await app.get(Reports).run(1).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(NoReplicaAvailableError);
    expect((error as Error).message).toMatch(/^Cannot route a read on database "default" because no replica is usable \(/);
    expect((error as Error).message).toContain('Please make sure that a replica is up, or set routing.fallbackToPrimary to true.');
  });
});
