import { jest } from '@jest/globals';
import { Injectable, Module, type INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import type { Subscription } from 'rxjs';
import { DatabaseService, NoReplicaAvailableError, PoolModule, ReadOnly, type PoolEvent, type PoolModuleRootOptions } from 'nestjs-pg-pools';
import { clusterConfig, clusterCtl } from '../support/cluster.js';
import { expectNoSessionsLeft } from '../support/sessions.js';
import { waitFor } from '../support/wait.js';
import { ReadLoad, routingOptions, tally, where, type Where } from '../support/routing.support.js';

// Replica failover on the real cluster: replicas are stopped with `pg_ctl stop -m immediate` while a
// steady, bounded read load runs through a @ReadOnly() provider method. No read may fail; the
// stopped replica is banned (event + counter), the probe restores it once it runs again; with
// both replicas down reads go to the primary, or fail with NoReplicaAvailableError when
// fallbackToPrimary is false. Every node is started again in afterAll.

const APP = 'e2e-routing-failover';
const BAN_MS = 300;

jest.setTimeout(30_000);

@Injectable()
class Reads {
  constructor(readonly db: DatabaseService) {}

  @ReadOnly()
  one(): Promise<Where> {
    return where(this.db);
  }
}

async function start(extra: Partial<PoolModuleRootOptions>): Promise<{ app: INestApplication; events: PoolEvent[]; subscription: Subscription }> {
  @Module({ imports: [PoolModule.forRoot(routingOptions(APP, extra))], providers: [Reads] })
  class FailoverModule {}
  const moduleRef = await Test.createTestingModule({ imports: [FailoverModule] }).compile();
  const app = moduleRef.createNestApplication({ logger: false });
  await app.init();
  const events: PoolEvent[] = [];
  const subscription = app.get(DatabaseService).events$.subscribe((e) => events.push(e));
  return { app, events, subscription };
}

function counters(db: DatabaseService) {
  const cluster = (db as unknown as { cluster: { primary: { counters: Record<string, number> }; replicas: Array<{ node: { counters: Record<string, number> } }> } }).cluster;
  return { primary: { ...cluster.primary.counters }, replica1: { ...cluster.replicas[0]!.node.counters }, replica2: { ...cluster.replicas[1]!.node.counters } };
}

const ofType = <T extends PoolEvent['type']>(events: PoolEvent[], type: T, node?: string) =>
  events.filter((e): e is Extract<PoolEvent, { type: T }> => e.type === type && (node === undefined || e.node === node));

const OPTIONS: Partial<PoolModuleRootOptions> = {
  routing: { replicaBanMs: BAN_MS, lagCheckIntervalMs: 60_000, maxReplicationLagMs: 0 },
  breaker: { failureThreshold: 3, resetTimeoutMs: 500 },
  acquireTimeoutMs: 2000,
};

describe('replica failover under a steady read load (real servers stopped and started)', () => {
  let main: Awaited<ReturnType<typeof start>>;
  let strict: Awaited<ReturnType<typeof start>> | undefined;
  let load: ReadLoad | undefined;

  beforeAll(async () => {
    main = await start(OPTIONS);
  });

  afterAll(async () => {
    await load?.stop();
    main?.subscription.unsubscribe();
    await main?.app.close();
    strict?.subscription.unsubscribe();
    await strict?.app.close();
    await clusterCtl('start');
    await expectNoSessionsLeft(APP);
  }, 90_000);

  it('stop one replica: 0 failed reads, the replica is banned, then restored by the probe after it restarts', async () => {
    const db = main.app.get(DatabaseService);
    const reads = main.app.get(Reads);
    load = new ReadLoad(() => reads.one());
    expect(tally(await load.next(60, 'reads before the stop'))).toMatchObject({ primary: 0 });
    const before = counters(db);
    try {
      await clusterCtl('node-stop', 'replica1', 'immediate');
      await waitFor('replica1 to be banned', () => ofType(main.events, 'replica-banned', 'replica1').length > 0, 10_000, 25);
      const whileDown = await load.next(100, 'reads while replica1 is down');
      expect(tally(whileDown)).toEqual({ primary: 0, replica1: 0, replica2: 100 });
      const ban = ofType(main.events, 'replica-banned', 'replica1')[0]!;
      expect(ban).toMatchObject({ database: 'default', role: 'replica', reason: expect.any(String) });
      expect(ban.reason).not.toContain(clusterConfig.password);
      const during = counters(db);
      expect(during.replica1.bans - before.replica1.bans).toBe(1);
      expect(during.replica2.retries + during.primary.retries - before.replica2.retries - before.primary.retries).toBeGreaterThanOrEqual(1);
    } finally {
      await clusterCtl('node-start', 'replica1');
    }
    await waitFor('replica1 to be restored by the probe', () => ofType(main.events, 'replica-restored', 'replica1').length > 0, 10_000, 25);
    await waitFor('reads to reach replica1 again', async () => (await load!.next(20, 'reads after the restart')).includes('replica1'), 10_000, 25);
    await load.stop();
    expect(load.failures).toEqual([]);
    expect(ofType(main.events, 'replica-banned', 'replica1')).toHaveLength(1);
    expect(ofType(main.events, 'replica-banned', 'replica2')).toHaveLength(0);
    expect(counters(db).replica1.bans - before.replica1.bans).toBe(1);
  });

  it('stop both replicas: reads fall back to the primary with 0 failures; with fallbackToPrimary: false they fail with NoReplicaAvailableError', async () => {
    const db = main.app.get(DatabaseService);
    main.events.length = 0;
    const reads = main.app.get(Reads);
    load = new ReadLoad(() => reads.one());
    await load.next(40, 'reads before the stop');
    const before = counters(db);
    try {
      await Promise.all([clusterCtl('node-stop', 'replica1', 'immediate'), clusterCtl('node-stop', 'replica2', 'immediate')]);
      await waitFor('both replicas to be banned', () => ofType(main.events, 'replica-banned').length === 2, 10_000, 25);
      expect(tally(await load.next(100, 'reads while both replicas are down'))).toEqual({ primary: 100, replica1: 0, replica2: 0 });
      const during = counters(db);
      expect(during.primary.fallbacks - before.primary.fallbacks).toBeGreaterThanOrEqual(100);
      expect(during.replica1.bans - before.replica1.bans).toBe(1);
      expect(during.replica2.bans - before.replica2.bans).toBe(1);

      strict = await start({ ...OPTIONS, routing: { ...OPTIONS.routing, fallbackToPrimary: false } });
      const error = await strict.app.get(Reads).one().catch((err: unknown) => err);
      expect(error).toBeInstanceOf(NoReplicaAvailableError);
      const message = (error as Error).message;
      expect(message).toMatch(/^Cannot route a read on database "default" because no replica is usable \(replica1 banned after a connection failure: .+; replica2 banned after a connection failure: .+\)\. /);
      expect(message).toContain(`${clusterConfig.ports.replica1}`);
      expect(message.endsWith('Please make sure that a replica is up, or set routing.fallbackToPrimary to true.')).toBe(true);
      expect(message).not.toContain(clusterConfig.password);
      await expect(where(strict.app.get(DatabaseService).primary)).resolves.toMatchObject({ node: 'primary' });
    } finally {
      await Promise.all([clusterCtl('node-start', 'replica1'), clusterCtl('node-start', 'replica2')]);
    }
    await waitFor('both replicas to be restored', () => ofType(main.events, 'replica-restored').length === 2, 10_000, 25);
    await waitFor('reads to reach both replicas again', async () => {
      const counts = tally(await load!.next(40, 'reads after the restart'));
      return counts.replica1 > 0 && counts.replica2 > 0;
    }, 10_000, 25);
    await load.stop();
    expect(load.failures).toEqual([]);
    await waitFor('the strict app to restore its replicas too', async () => (await strict!.app.get(Reads).one().catch(() => undefined))?.recovery === true, 10_000, 25);
  });
});
