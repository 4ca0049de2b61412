import { EventEmitter } from 'node:events';
import { jest } from '@jest/globals';
import { Logger } from '@nestjs/common';
import type { QueryResult } from 'pg';
import { resolveOptions } from '../config/resolve-options.js';
import type { PoolModuleOptions, ReplicaCandidate } from '../pool.interfaces.js';
import type { PoolEvent } from '../pool.events.js';
import { NoReplicaAvailableError, PoolError, PoolUnavailableError, PrimaryUnavailableError, ReadOnlyInTransactionError } from '../pool.exceptions.js';
import { markWrite, newSession, routingStorage, type RoutingScope } from '../routing/routing-context.js';
import { PinnedTransaction } from '../transactions/pinned-transaction.js';
import { checkTransactionOptions } from '../transactions/transaction-options.js';
import type { ReaderState } from '../routing/reader-state.js';
import { recordEnd, WalHistory } from '../routing/wal-history.js';
import { FakeClient } from '../../test/support/fake-pg-client.js';
import { PoolCluster } from './pool-cluster.js';
import type { NodePool } from '../pool/node-pool.js';

// Routing decisions of a real PoolCluster whose pools never connect: each node's `query` is
// replaced by a stub that answers with the node's name (or fails the way a dead server does),
// so strategies, bans, retries, fallbacks and read-your-writes can be checked exactly.

type Answer = (text: string) => Promise<QueryResult<any>>;

const connectionRefused = () => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:2'), { code: 'ECONNREFUSED' });
const syntaxError = () => Object.assign(new Error('syntax error at or near "SELEC"'), { code: '42601' });
const readOnlyViolation = () => Object.assign(new Error('cannot execute INSERT in a read-only transaction'), { code: '25006' });

function result(rows: any[]): QueryResult<any> {
  return { rows, rowCount: rows.length, command: 'SELECT', oid: 0, fields: [] };
}

function makeCluster(options: Partial<PoolModuleOptions> = {}, replicaCount = 2): PoolCluster {
  const node = (port: number, name: string) => ({ host: '127.0.0.1', port, user: 'u', password: 'cluster-spec-secret', database: 'd', name });
  return new PoolCluster(
    resolveOptions({
      primary: node(1, 'primary'),
      replicas: Array.from({ length: replicaCount }, (_, i) => node(2 + i, `r${i + 1}`)),
      preset: 'test',
      env: {},
      ...options,
      routing: { replicaBanMs: 60_000, ...options.routing },
    }),
  );
}

/** Every node answers `{ node: <name> }`, except what `answers` overrides. */
function stub(cluster: PoolCluster, answers: Record<string, Answer> = {}): string[] {
  const served: string[] = [];
  for (const n of cluster.nodes) {
    (n as { query: NodePool['query'] }).query = ((text: string) => {
      served.push(n.name);
      const answer = answers[n.name];
      if (answer) return answer(typeof text === 'string' ? text : '');
      return Promise.resolve(result([{ node: n.name }]));
    }) as NodePool['query'];
  }
  return served;
}

const replica = (cluster: PoolCluster, i: number): ReaderState => cluster.replicas[i]!;

function readOnlyScope(): RoutingScope {
  return { readOnly: true, session: newSession(), tx: undefined };
}

Logger.overrideLogger(false);

describe('PoolCluster routing', () => {
  let cluster: PoolCluster;

  afterEach(async () => {
    await cluster?.close();
  });

  describe('strategies', () => {
    it('round-robin alternates and skips unusable replicas', () => {
      cluster = makeCluster();
      const picks = Array.from({ length: 6 }, () => cluster.pickReplica(undefined, undefined)!.node.name);
      expect(picks).toEqual(['r1', 'r2', 'r1', 'r2', 'r1', 'r2']);
      replica(cluster, 0).bannedUntil = Date.now() + 1000;
      expect(Array.from({ length: 3 }, () => cluster.pickReplica(undefined, undefined)!.node.name)).toEqual(['r2', 'r2', 'r2']);
      replica(cluster, 1).lagMs = 20_000;
      expect(cluster.pickReplica(undefined, undefined)).toBeUndefined();
    });

    it('weighted follows the weights exactly over a cycle (smooth weighted round-robin)', () => {
      cluster = makeCluster({ routing: { strategy: 'weighted' } });
      (replica(cluster, 0).node.config as { weight: number }).weight = 3;
      const picks = Array.from({ length: 400 }, () => cluster.pickReplica(undefined, undefined)!.node.name);
      expect(picks.filter((p) => p === 'r1')).toHaveLength(300);
      expect(picks.slice(0, 4).sort()).toEqual(['r1', 'r1', 'r1', 'r2']);
    });

    it('least-busy picks the replica with the fewest in-use + waiting clients', () => {
      cluster = makeCluster({ routing: { strategy: 'least-busy' } });
      const load = { r1: 3, r2: 1 };
      Object.defineProperty(replica(cluster, 0).node, 'inUse', { get: () => load.r1, configurable: true });
      Object.defineProperty(replica(cluster, 1).node, 'waiting', { get: () => load.r2, configurable: true });
      expect(Array.from({ length: 4 }, () => cluster.pickReplica(undefined, undefined)!.node.name)).toEqual(['r2', 'r2', 'r2', 'r2']);
      load.r2 = 4;
      expect(cluster.pickReplica(undefined, undefined)!.node.name).toBe('r1');
      load.r1 = 0;
      load.r2 = 0;
      expect(Array.from({ length: 4 }, () => cluster.pickReplica(undefined, undefined)!.node.name).sort()).toEqual(['r1', 'r1', 'r2', 'r2']);
    });

    it('a selector function gets plain candidates and may pick one by identity or by name', () => {
      const given: Array<readonly ReplicaCandidate[]> = [];
      let answer: (c: readonly ReplicaCandidate[]) => ReplicaCandidate | undefined = (c) => c[1];
      cluster = makeCluster({ routing: { strategy: (c) => (given.push(c), answer(c)) } });
      expect(cluster.pickReplica(undefined, undefined)!.node.name).toBe('r2');
      expect(Object.keys(given[0]![0]!).sort()).toEqual(['idle', 'inUse', 'lagMs', 'name', 'total', 'waiting', 'weight']);
      answer = (c) => ({ ...c[0]! });
      expect(cluster.pickReplica(undefined, undefined)!.node.name).toBe('r1');
      answer = () => undefined;
      expect(cluster.pickReplica(undefined, undefined)).toBeUndefined();
      answer = () => ({ name: 'nope' }) as ReplicaCandidate;
      expect(() => cluster.pickReplica(undefined, undefined)).toThrow(PoolError);
    });
  });

  describe('failover', () => {
    it('retries a connection failure once on another replica and bans the failed one', async () => {
      cluster = makeCluster();
      const served = stub(cluster, { r1: () => Promise.reject(connectionRefused()) });
      const res = await cluster.replicaQuery('SELECT 1');
      expect(res.rows[0].node).toBe('r2');
      expect(served).toEqual(['r1', 'r2']);
      expect(replica(cluster, 0).bannedUntil).toBeGreaterThan(Date.now());
      expect(replica(cluster, 0).node.counters.bans).toBe(1);
      expect(replica(cluster, 1).node.counters.retries).toBe(1);
      expect(replica(cluster, 1).node.counters.routedReads).toBe(1);
    });

    it('falls back to the primary when the retry fails too, or when no replica is usable', async () => {
      cluster = makeCluster();
      const served = stub(cluster, { r1: () => Promise.reject(connectionRefused()), r2: () => Promise.reject(connectionRefused()) });
      expect((await cluster.replicaQuery('SELECT 1')).rows[0].node).toBe('primary');
      expect(served).toEqual(['r1', 'r2', 'primary']);
      expect((await cluster.replicaQuery('SELECT 1')).rows[0].node).toBe('primary');
      expect(cluster.primary.counters).toMatchObject({ fallbacks: 2, retries: 1, routedReads: 2 });
      expect(cluster.replicas.map((r) => r.node.counters.bans)).toEqual([1, 1]);
    });

    it('never retries SQL errors, and explains 25006 on a replica', async () => {
      cluster = makeCluster();
      const served = stub(cluster, { r1: () => Promise.reject(syntaxError()), r2: () => Promise.reject(readOnlyViolation()) });
      await expect(cluster.replicaQuery('SELEC 1')).rejects.toMatchObject({ code: '42601' });
      const error = (await cluster.replicaQuery('INSERT INTO t VALUES (1)').catch((e: unknown) => e)) as Error & { code: string };
      expect(served).toEqual(['r1', 'r2']);
      expect(error.code).toBe('25006');
      expect(error.message).toBe(
        'cannot execute INSERT in a read-only transaction — Cannot write on read replica "default/r2" because the statement ran in a @ReadOnly() scope, ' +
          'withClient({ readOnly: true }) or db.replica, and replicas only accept reads; nothing was written. ' +
          'Please make sure that methods which write are not decorated with @ReadOnly(), or send the statement through db.primary.',
      );
      expect(replica(cluster, 0).bannedUntil).toBe(0);
    });

    it('with fallbackToPrimary: false, fails with NoReplicaAvailableError naming why each replica is out', async () => {
      cluster = makeCluster({ routing: { fallbackToPrimary: false, maxReplicationLagMs: 1000 } });
      stub(cluster, { r1: () => Promise.reject(connectionRefused()) });
      replica(cluster, 1).lagMs = 4321;
      const error = (await cluster.replicaQuery('SELECT 1').catch((e: unknown) => e)) as NoReplicaAvailableError;
      expect(error).toBeInstanceOf(NoReplicaAvailableError);
      expect(error.message).toBe(
        'Cannot route a read on database "default" because no replica is usable (r1 banned after a connection failure: connect ECONNREFUSED 127.0.0.1:2; ' +
          'r2 lagging 4321ms behind the current primary (maxReplicationLagMs 1000)). Please make sure that a replica is up, or set routing.fallbackToPrimary to true.',
      );
      expect((error as Error & { cause?: unknown }).cause).toMatchObject({ code: 'ECONNREFUSED' });
      expect(cluster.primary.counters.routedReads).toBe(0);
    });
  });

  describe('read-your-writes', () => {
    function lsnStub(cluster: PoolCluster, lsns: string[]): string[] {
      return stub(cluster, {
        primary: (text) => Promise.resolve(result(text.includes('pg_current_wal_insert_lsn') ? [{ lsn: lsns.shift() ?? '0/0' }] : [{ node: 'primary' }])),
      });
    }

    it('after a write in the scope, reads go only to replicas known to have replayed it, else to the primary', async () => {
      cluster = makeCluster();
      const served = lsnStub(cluster, ['0/3000']);
      replica(cluster, 0).replayLsn = 0x2000n;
      replica(cluster, 1).replayLsn = 0x3000n;
      const scope = readOnlyScope();
      markWrite(scope, 'default');
      for (let i = 0; i < 3; i++) expect((await cluster.read(scope, 'SELECT 1')).rows[0].node).toBe('r2');
      expect(served.filter((n) => n === 'primary')).toHaveLength(1);
      replica(cluster, 1).replayLsn = 0x2fffn;
      (replica(cluster, 1).node as { systemQuery: unknown }).systemQuery = () => Promise.resolve(result([{ replay: '0/2FFF' }]));
      (replica(cluster, 0).node as { systemQuery: unknown }).systemQuery = () => Promise.resolve(result([{ replay: '0/2000' }]));
      expect((await cluster.read(scope, 'SELECT 1')).rows[0].node).toBe('primary');
      expect(cluster.primary.counters.fallbacks).toBe(1);
    });

    it('asks the replicas for their replay position when the monitor\'s figure is too old', async () => {
      cluster = makeCluster();
      lsnStub(cluster, ['0/3000']);
      replica(cluster, 0).replayLsn = 0x1000n;
      replica(cluster, 1).replayLsn = 0x1000n;
      const checks = jest.fn(() => Promise.resolve(result([{ replay: '0/3000' }])));
      (replica(cluster, 0).node as { systemQuery: unknown }).systemQuery = checks;
      (replica(cluster, 1).node as { systemQuery: unknown }).systemQuery = checks;
      const scope = readOnlyScope();
      markWrite(scope, 'default');
      const [a, b] = await Promise.all([cluster.read(scope, 'SELECT 1'), cluster.read(scope, 'SELECT 1')]);
      expect([a.rows[0].node, b.rows[0].node].sort()).toEqual(['r1', 'r2']);
      expect(checks).toHaveBeenCalledTimes(2);
      expect(replica(cluster, 0).replayLsn).toBe(0x3000n);
    });

    it('fetches the write position again after every later write, and a carried token raises it', async () => {
      cluster = makeCluster();
      lsnStub(cluster, ['0/3000', '0/5000']);
      replica(cluster, 0).replayLsn = 0x4000n;
      replica(cluster, 1).replayLsn = 0x4000n;
      const scope: RoutingScope = { readOnly: false, session: newSession(undefined, new Map([['default', 0x3500n]])), tx: undefined };
      await routingStorage.run(scope, async () => {
        expect(await cluster.consistencyToken()).toBe('0/3500');
        await cluster.query('INSERT 1');
        expect(await cluster.consistencyToken()).toBe('0/3500');
        await cluster.query('INSERT 2');
        expect(await cluster.consistencyToken()).toBe('0/5000');
      });
    });

    it('counts a write that reached the server (or lost its connection), never one refused before it was sent', async () => {
      // Without the hold: the refusal itself reaches the caller.
      cluster = makeCluster({ failover: { holdWritesMs: 0 } });
      const refusals = [
        new PoolUnavailableError('default', 'primary', '127.0.0.1:1', new Date(), 'x'),
        connectionRefused(),
        Object.assign(new Error('sorry, too many clients already'), { code: '53300' }),
      ];
      for (const refusal of refusals) {
        stub(cluster, { primary: () => Promise.reject(refusal) });
        const scope: RoutingScope = { readOnly: false, session: newSession(), tx: undefined };
        await expect(routingStorage.run(scope, () => cluster.query('INSERT 1'))).rejects.toBe(refusal);
        expect(scope.session.writes).toBeUndefined();
      }
      for (const sent of [syntaxError(), Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' })]) {
        stub(cluster, { primary: () => Promise.reject(sent) });
        const scope: RoutingScope = { readOnly: false, session: newSession(), tx: undefined };
        await expect(routingStorage.run(scope, () => cluster.query('INSERT 1'))).rejects.toBe(sent);
        expect(scope.session.writes?.get('default')).toBe(1);
      }
    });

    it('when the primary cannot tell its position, reads the replica that has the known position, else the most caught-up one, and counts it', async () => {
      cluster = makeCluster();
      stub(cluster, { primary: () => Promise.reject(connectionRefused()) });
      replica(cluster, 0).replayLsn = 0x2000n;
      replica(cluster, 1).replayLsn = 0x3000n;
      const scope = readOnlyScope();
      markWrite(scope, 'default');
      for (let i = 0; i < 3; i++) expect((await cluster.read(scope, 'SELECT 1')).rows[0].node).toBe('r2');
      scope.session.minLsn = new Map([['default', 0x1000n]]);
      const known = await Promise.all([cluster.read(scope, 'SELECT 1'), cluster.read(scope, 'SELECT 1')]);
      expect(known.map((r) => r.rows[0].node).sort()).toEqual(['r1', 'r2']);
      expect(cluster.primary.counters.rywUnverified).toBe(5);
      await expect(routingStorage.run(scope, () => cluster.consistencyToken())).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    });

    it('a statement that fell back to the primary under @ReadOnly() counts as a write unless its command tag is a read', async () => {
      cluster = makeCluster();
      replica(cluster, 0).bannedUntil = Date.now() + 60_000;
      replica(cluster, 1).bannedUntil = Date.now() + 60_000;
      stub(cluster, { primary: (text) => Promise.resolve({ ...result([]), command: text.startsWith('INSERT') ? 'INSERT' : 'SELECT' }) });
      const scope = readOnlyScope();
      await routingStorage.run(scope, () => cluster.query('SELECT 1'));
      expect(scope.session.writes).toBeUndefined();
      await routingStorage.run(scope, () => cluster.query('INSERT 1'));
      expect(scope.session.writes?.get('default')).toBe(1);
    });

    it('with consistency "eventual", writes are not tracked and the token is the primary\'s current position', async () => {
      cluster = makeCluster({ routing: { consistency: 'eventual' } });
      lsnStub(cluster, ['0/7000']);
      replica(cluster, 0).replayLsn = 0x10n;
      replica(cluster, 1).replayLsn = 0x10n;
      const scope = readOnlyScope();
      await routingStorage.run({ ...scope, readOnly: false }, () => cluster.query('INSERT 1'));
      expect((await cluster.read(scope, 'SELECT 1')).rows[0].node).toMatch(/^r/);
      expect(await routingStorage.run(scope, () => cluster.consistencyToken())).toBe('0/7000');
    });

    it('a named database writes its name into the token', async () => {
      cluster = new PoolCluster({ ...makeCluster().options, database: 'analytics' });
      lsnStub(cluster, ['0/9000']);
      expect(await cluster.consistencyToken()).toBe('analytics:0/9000');
    });
  });

  describe('transactions', () => {
    it('readOnlyInTransaction "throw" refuses read-only work on a read-write transaction only', async () => {
      cluster = makeCluster({ routing: { readOnlyInTransaction: 'throw' } });
      const tx = new PinnedTransaction('default', cluster.primary, new EventEmitter() as never, {});
      const run = jest.fn(() => Promise.resolve(result([{ node: 'tx' }])));
      (cluster.primary as { run: unknown }).run = run;
      const scope: RoutingScope = { readOnly: true, session: newSession(), tx: new Map([['default', tx]]) };
      await expect(routingStorage.run(scope, () => cluster.query('SELECT 1'))).rejects.toThrow(ReadOnlyInTransactionError);
      await expect(routingStorage.run({ ...scope, readOnly: false }, () => cluster.query('SELECT 1'))).resolves.toMatchObject({ rows: [{ node: 'tx' }] });
      const readOnlyTx = new PinnedTransaction('default', cluster.primary, new EventEmitter() as never, { readOnly: true });
      await expect(routingStorage.run({ ...scope, tx: new Map([['default', readOnlyTx]]) }, () => cluster.query('SELECT 1'))).resolves.toMatchObject({ rows: [{ node: 'tx' }] });
      await expect(routingStorage.run(scope, () => cluster.primaryQuery('SELECT 1'))).resolves.toMatchObject({ rows: [{ node: 'tx' }] });
    });

    it('validates transaction options with one clear error', () => {
      expect(() => checkTransactionOptions({ isolationLevel: 'snapshot' as never })).toThrow(
        'Invalid transaction option `isolationLevel`: expected one of "read uncommitted", "read committed", "repeatable read", "serializable", got "snapshot" (string).',
      );
      expect(() => checkTransactionOptions({ propagation: 'nested' as never }, '@Transactional() option')).toThrow(
        'Invalid @Transactional() option `propagation`: expected "join" or "requiresNew", got "nested" (string).',
      );
      expect(() => checkTransactionOptions({ readOnly: 'yes' as never })).toThrow('Invalid transaction option `readOnly`: expected true or false, got "yes" (string).');
      expect(() => checkTransactionOptions({ isolationLevel: 'serializable', readOnly: true, deferrable: true, propagation: 'requiresNew' })).not.toThrow();
    });
  });
});

describe('WalHistory (replication lag in ms)', () => {
  it('after reset() (a new primary) the outage before it is not lag: only the time since the new primary was first seen past the replica', () => {
    const wal = new WalHistory(60_000);
    for (let t = 0; t <= 10_000; t += 200) wal.record(BigInt(t + 1), t);
    // The old primary was last seen at 10_001 at t = 10_000; the new one answers 20 s later, a little further on.
    wal.reset();
    expect(wal.latest).toBeUndefined();
    wal.record(10_100n, 30_000);
    expect(wal.lagMs(10_001n, 25_000, 30_300)).toBe(300);
    expect(wal.lagMs(10_100n, 25_000, 30_300)).toBe(0);
  });

  it('is 0 when the replica replayed the latest primary position', () => {
    const wal = new WalHistory(60_000);
    wal.record(0x100n, 1000);
    expect(wal.lagMs(0x100n, 50_000, 2000)).toBe(0);
    expect(wal.lagMs(0x200n, 50_000, 2000)).toBe(0);
  });

  it('dates a steady 3 s apply delay from the replay timestamp and the primary samples', () => {
    const wal = new WalHistory(60_000);
    for (let t = 0; t <= 10_000; t += 200) wal.record(BigInt(t + 1), t);
    // The replica replayed up to what the primary had at t = 7000 and its last commit is 3000 ms old.
    const lag = wal.lagMs(7001n, 3000, 10_000);
    expect(lag).toBeGreaterThanOrEqual(2800);
    expect(lag).toBeLessThanOrEqual(3000);
  });

  it('does not take an idle database\'s old commit time for lag when the replica trails by a moment', () => {
    const wal = new WalHistory(60_000);
    for (let t = 0; t <= 10_000; t += 1000) wal.record(0x100n, t);
    wal.record(0x180n, 10_500);
    // Last commit replayed an hour ago, replica just behind the latest (non-commit) record.
    expect(wal.lagMs(0x100n, 3_600_000, 10_510)).toBe(510);
  });

  it('uses the time since the primary was first seen past the replica when the history does not reach back', () => {
    const wal = new WalHistory(60_000);
    wal.record(0x500n, 1000);
    expect(wal.lagMs(0x100n, 3_600_000, 1200)).toBe(200);
  });

  it('forgets old samples and restarts after a new primary with a lower position', () => {
    const wal = new WalHistory(1000);
    for (let t = 0; t <= 5000; t += 100) wal.record(BigInt(t + 1), t);
    expect(wal.lagMs(1n, undefined, 5000)).toBeLessThanOrEqual(1200);
    wal.record(5n, 7000);
    expect(wal.latest).toBe(5n);
  });
});

describe('recordEnd', () => {
  it('takes a position just past a WAL page header back to the page boundary', () => {
    expect(recordEnd(0x4000018n)).toBe(0x4000000n);
    expect(recordEnd(0x4000060n)).toBe(0x4000060n);
    expect(recordEnd(0x4002018n)).toBe(0x4002000n);
  });
});

describe('PoolCluster: follows the discovered primary', () => {
  type Role = { recovering: boolean; timeline: number } | 'down';
  function roles(cluster: PoolCluster, answers: Record<string, Role>): void {
    for (const n of cluster.nodes) {
      (n as { monitorQuery: NodePool['monitorQuery'] }).monitorQuery = () => {
        const a = answers[n.name]!;
        if (a === 'down') return Promise.reject(connectionRefused());
        return Promise.resolve(result([{ recovering: a.recovering, checkpoint_timeline: a.timeline, wal_timeline: a.recovering ? null : a.timeline }]));
      };
    }
  }

  it('sends writes to a promoted replica, reads to the others, and fails writes fast while no node is the primary', async () => {
    const cluster = makeCluster({ failover: { holdWritesMs: 0 } });
    const served = stub(cluster);
    const answers: Record<string, Role> = { primary: 'down', r1: { recovering: false, timeline: 2 }, r2: { recovering: true, timeline: 1 } };
    roles(cluster, answers);
    try {
      await cluster.topology.check();
      expect(cluster.primary.name).toBe('r1');
      expect(cluster.primary.role).toBe('primary');
      expect(cluster.replicas.map((r) => r.node.name)).toEqual(['r2']);
      await cluster.query('INSERT INTO t VALUES (1)');
      expect(served.at(-1)).toBe('r1');
      await cluster.replicaQuery('SELECT 1');
      expect(served.at(-1)).toBe('r2');
      answers.r1 = 'down';
      await cluster.topology.check();
      const before = served.length;
      await expect(cluster.query('INSERT INTO t VALUES (2)')).rejects.toBeInstanceOf(PrimaryUnavailableError);
      await expect(cluster.transaction(() => undefined)).rejects.toBeInstanceOf(PrimaryUnavailableError);
      expect(served.length).toBe(before);
      // Reads still go to the replica.
      await cluster.replicaQuery('SELECT 1');
      expect(served.at(-1)).toBe('r2');
    } finally {
      await cluster.close();
    }
  });

  it('holds writes while no node is the primary and sends them to the new one; gives up at holdWritesMs', async () => {
    const cluster = makeCluster({ failover: { holdWritesMs: 600 } });
    const served = stub(cluster);
    const events: PoolEvent[] = [];
    const sub = cluster.events$.subscribe((e) => events.push(e));
    const answers: Record<string, Role> = { primary: 'down', r1: { recovering: true, timeline: 1 }, r2: { recovering: true, timeline: 1 } };
    roles(cluster, answers);
    try {
      await cluster.topology.check();
      expect(cluster.topology.lostSince).not.toBe(0);
      const t0 = Date.now();
      const write = cluster.query('INSERT INTO t VALUES (1)');
      const tx = cluster.transaction(() => 'committed');
      setTimeout(() => {
        answers.r1 = { recovering: false, timeline: 2 };
        void cluster.topology.check();
      }, 200).unref();
      await expect(write).resolves.toMatchObject({ rows: [{ node: 'r1' }] });
      const waited = Date.now() - t0;
      expect(waited).toBeGreaterThanOrEqual(190);
      expect(waited).toBeLessThan(600);
      expect(served.at(-1)).toBe('r1');
      expect(events.find((e) => e.type === 'write-held')).toMatchObject({ node: 'r1', outcome: 'sent' });
      expect(cluster.primary.counters.heldWrites).toBeGreaterThanOrEqual(1);
      // The transaction's BEGIN waited as well (it runs on a node with no real connection: refused, but on r1).
      await tx.catch(() => undefined);
      answers.r1 = 'down';
      await cluster.topology.check();
      const t1 = Date.now();
      await expect(cluster.query('INSERT INTO t VALUES (2)')).rejects.toBeInstanceOf(PrimaryUnavailableError);
      expect(Date.now() - t1).toBeGreaterThanOrEqual(590);
      expect(events.filter((e) => e.type === 'write-held').at(-1)).toMatchObject({ outcome: 'timed-out' });
    } finally {
      sub.unsubscribe();
      await cluster.close();
    }
  });

  it('a write refused with 25006 waits for the role check and runs on the new primary; one that lost its connection after it was sent is not run again', async () => {
    const cluster = makeCluster({ failover: { holdWritesMs: 2000 } });
    const answers: Record<string, Role> = { primary: { recovering: false, timeline: 1 }, r1: { recovering: true, timeline: 1 }, r2: { recovering: true, timeline: 1 } };
    roles(cluster, answers);
    const readOnly = () => Promise.reject(readOnlyViolation());
    const served = stub(cluster, { primary: readOnly });
    try {
      await cluster.topology.check();
      // The old primary restarted as a standby, r1 was promoted.
      answers.primary = { recovering: true, timeline: 1 };
      answers.r1 = { recovering: false, timeline: 2 };
      await expect(cluster.query('INSERT INTO t VALUES (1)')).resolves.toMatchObject({ rows: [{ node: 'r1' }] });
      expect(served).toEqual(['primary', 'r1']);
      // Nothing changed: a 25006 of the primary itself (a read-only transaction) stands.
      stub(cluster, { r1: readOnly });
      await expect(cluster.query('INSERT INTO t VALUES (2)')).rejects.toMatchObject({ code: '25006' });
      const reset = Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });
      const sent = stub(cluster, { r1: () => Promise.reject(reset) });
      answers.r1 = { recovering: true, timeline: 2 };
      answers.r2 = { recovering: false, timeline: 3 };
      await expect(cluster.query('INSERT INTO t VALUES (3)')).rejects.toBe(reset);
      expect(sent).toEqual(['r1']);
    } finally {
      await cluster.close();
    }
  });

  it('endpoints keep their configured role: a read endpoint reaching the primary is neither the writer nor fenced; a write endpoint reaching a standby means no primary', async () => {
    const node = (port: number, name: string) => ({ host: '127.0.0.1', port, user: 'u', password: 'cluster-spec-secret', database: 'd', name, endpoint: true });
    const cluster = makeCluster({ primary: node(1, 'rw'), replicas: [node(2, 'ro')], failover: { holdWritesMs: 0 } });
    const answers: Record<string, Role> = { rw: { recovering: false, timeline: 1 }, ro: { recovering: false, timeline: 2 } };
    roles(cluster, answers);
    stub(cluster);
    try {
      await cluster.topology.check();
      expect(cluster.primary.name).toBe('rw');
      expect(cluster.topology.fenced).toEqual([]);
      expect(cluster.replicas.map((r) => r.node.name)).toEqual(['ro']);
      answers.rw = { recovering: true, timeline: 1 };
      await cluster.topology.check();
      expect(cluster.topology.lostSince).not.toBe(0);
      expect(cluster.replicas.map((r) => r.node.name)).toEqual(['ro']);
      await expect(cluster.query('INSERT INTO t VALUES (1)')).rejects.toBeInstanceOf(PrimaryUnavailableError);
      answers.rw = { recovering: false, timeline: 2 };
      await cluster.topology.check();
      await expect(cluster.query('INSERT INTO t VALUES (1)')).resolves.toMatchObject({ rows: [{ node: 'rw' }] });
      // A failed read endpoint stays in rotation until a new connection through it fails too, then is out for at most 1 s.
      const ro = cluster.replicas[0]!;
      cluster.ban(ro, connectionRefused());
      expect(ro.bannedUntil).toBe(0);
      const deadline = Date.now() + 3000;
      while (ro.bannedUntil === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
      expect(ro.bannedUntil).not.toBe(0);
      expect(ro.bannedUntil - Date.now()).toBeLessThanOrEqual(1000);
    } finally {
      await cluster.close();
    }
  });

  it('gives new connections the session settings of the node’s current role, password included', async () => {
    FakeClient.reset();
    FakeClient.refuse = true;
    const cluster = makeCluster({ replicas: [{ host: '127.0.0.1', port: 3, user: 'u', password: 'cluster-spec-secret', database: 'd', Client: FakeClient }] } as never);
    try {
      const node = cluster.replicas[0]!.node;
      await node.pool.connect().catch(() => undefined);
      node.setRole('primary');
      await node.pool.connect().catch(() => undefined);
      const seen = FakeClient.instances.map((c) => c.config);
      expect(seen[0]!.options).toContain('default_transaction_read_only=on');
      expect(seen[1]!.options).not.toContain('default_transaction_read_only');
      expect(seen[1]!.options).toContain('statement_timeout=');
      expect(seen.map((s) => s.password)).toEqual(['cluster-spec-secret', 'cluster-spec-secret']);
    } finally {
      await cluster.close();
      FakeClient.reset();
    }
  });
});
