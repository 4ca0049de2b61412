import { jest } from '@jest/globals';
import { ReadOnly, type DatabaseService } from 'nestjs-pg-pools';
import { startApp, startAppBehindRelay, type TestApp } from '../support/app.js';
import { adminQuery, clusterConfig, nodeOptions } from '../support/cluster.js';
import { expectNoSessionsLeft } from '../support/sessions.js';
import { TcpRelay } from '../support/tcp-relay.js';
import { waitFor } from '../support/wait.js';
import { useReplicatedTable, waitForReplay, where, type Where } from '../support/routing.support.js';

// Read-your-writes counts only writes that reached a server, on the real primary + 2 replicas with
// "the network" of a node taken away by a TCP relay (no shared server is stopped):
// - a write refused before it was sent (connection refused, breaker open) does not hold the
//   scope's later replica reads back; they all succeed on healthy replicas;
// - a write that did reach the primary, then the primary cut: reads in that scope are still
//   answered by a replica (the most caught-up one), counted as unverified, instead of failing;
// - a write sent inside @ReadOnly() that fell back to the primary (every replica cut) counts as a
//   write: the scope's consistency token covers it.

jest.setTimeout(30_000);

const APP = 'e2e-routing-failed-writes';
const TABLE = 'routing_failed_writes_e2e';

class Reads {
  constructor(private readonly db: DatabaseService) {}

  @ReadOnly()
  where(): Promise<Where> {
    return where(this.db);
  }

  @ReadOnly()
  async seen(id: number): Promise<{ at: Where; found: boolean }> {
    const at = await where(this.db);
    const found = (await this.db.query(`SELECT 1 FROM ${TABLE} WHERE id = $1`, [id])).rowCount === 1;
    return { at, found };
  }

  @ReadOnly()
  client(): Promise<Where> {
    return this.db.withClient((c) => where(c));
  }

  /** A forgotten @ReadOnly() on a write. */
  @ReadOnly()
  async insert(id: number): Promise<void> {
    await this.db.query(`INSERT INTO ${TABLE} (id) VALUES ($1)`, [id]);
  }
}

const options = {
  preset: 'test' as const,
  applicationName: APP,
  min: 1,
  max: 4,
  retryAttempts: 1,
  acquireTimeoutMs: 2000,
  breaker: { failureThreshold: 3, resetTimeoutMs: 60_000 },
  routing: { lagCheckIntervalMs: 200 },
  // Refused writes fail at once here (held writes: test/failover/failover-hold-writes.e2e-spec.ts).
  failover: { holdWritesMs: 0 },
};

const onReplica = (w: Where) => (w.node === 'replica1' || w.node === 'replica2') && w.recovery;

useReplicatedTable(TABLE, 'id int PRIMARY KEY');

afterAll(async () => {
  await expectNoSessionsLeft(APP);
});

describe('with the primary cut off', () => {
  let t: TestApp;
  let relay: TcpRelay;

  beforeEach(async () => {
    ({ t, relay } = await startAppBehindRelay({ ...options, replicas: [nodeOptions('replica1', { name: 'replica1' }), nodeOptions('replica2', { name: 'replica2' })] }));
    // Both replicas measured once, so read-your-writes knows where they are.
    await waitFor('replicas measured', () => t.cluster.replicas.every((r) => r.replayLsn !== undefined), 5000);
  });

  afterEach(async () => {
    await relay.restore();
    await t.close();
  });

  it('a write refused before it was sent does not hold back the scope’s replica reads: 10 of 10 succeed', async () => {
    await relay.cut();
    // The pooled connections are gone: every write below is refused while connecting.
    await waitFor('primary pool emptied', () => t.db.primary.pool.totalCount === 0, 3000);
    const outcomes = await t.db.scope(async () => {
      const results: Array<{ write: string; read: Where | string }> = [];
      for (let i = 0; i < 10; i++) {
        const write = await t.db.query(`INSERT INTO ${TABLE} (id) VALUES ($1)`, [100 + i]).then(
          () => 'written',
          (err: Error & { code?: string }) => err.code ?? err.message,
        );
        const read = await new Reads(t.db).where().catch((err: Error) => err.message);
        results.push({ write, read });
      }
      const viaClient = await new Reads(t.db).client().catch((err: Error) => err.message);
      return { results, viaClient };
    });
    expect(outcomes.results.map((r) => r.write)).not.toContain('written');
    // Refused while connecting, or fast: by the open breaker (the background refill's failures
    // count towards it too, so it may be open before the first write), or by role discovery once it found no primary.
    const refusals = new Set(outcomes.results.map((r) => r.write));
    for (const code of refusals) expect(['ECONNREFUSED', 'POOL_UNAVAILABLE', 'PRIMARY_UNAVAILABLE']).toContain(code);
    expect(outcomes.results.filter((r) => typeof r.read !== 'string' && onReplica(r.read))).toHaveLength(10);
    expect(typeof outcomes.viaClient !== 'string' && onReplica(outcomes.viaClient)).toBe(true);
    expect(t.cluster.primary.counters.rywUnverified).toBe(0);
  });

  it('after a write that reached the primary, reads still get an answer from a replica that has it, counted as unverified', async () => {
    const seen = await t.db.scope(async () => {
      await t.db.query(`INSERT INTO ${TABLE} (id) VALUES (200)`);
      await waitForReplay('replica1');
      await waitForReplay('replica2');
      await waitFor('replicas measured past the write', () => t.cluster.replicas.every((r) => r.lagBytes === 0), 5000);
      await relay.cut();
      const reads = [];
      for (let i = 0; i < 4; i++) reads.push(await new Reads(t.db).seen(200).catch((err: Error) => err.message));
      return reads;
    });
    for (const read of seen) {
      expect(read).toMatchObject({ found: true });
      expect(onReplica((read as { at: Where }).at)).toBe(true);
    }
    expect(t.cluster.primary.counters.rywUnverified).toBeGreaterThanOrEqual(4);
    expect(await adminQuery('primary', `SELECT id FROM ${TABLE} WHERE id = 200`)).toEqual([{ id: 200 }]);
  });
});

describe('with every replica cut off', () => {
  it('a write sent inside @ReadOnly() that fell back to the primary counts as a write: the scope’s token covers it', async () => {
    const relays = await Promise.all([new TcpRelay(clusterConfig.host, clusterConfig.replica1.port).start(), new TcpRelay(clusterConfig.host, clusterConfig.replica2.port).start()]);
    let t: TestApp | undefined;
    try {
      t = await startApp({
        ...options,
        primary: nodeOptions('primary'),
        replicas: relays.map((r, i) => nodeOptions(i === 0 ? 'replica1' : 'replica2', { name: `replica${i + 1}`, port: r.port })),
      });
      const app = t;
      await Promise.all(relays.map((r) => r.cut()));
      const [{ before }] = (await adminQuery<{ before: string }>('primary', 'SELECT pg_current_wal_insert_lsn()::text AS before')) as [{ before: string }];
      const token = await app.db.scope(async () => {
        await new Reads(app.db).insert(300);
        return app.db.consistencyToken();
      });
      expect(await adminQuery('primary', `SELECT id FROM ${TABLE} WHERE id = 300`)).toEqual([{ id: 300 }]);
      expect(app.cluster.primary.counters.fallbacks).toBeGreaterThanOrEqual(1);
      expect(token).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
      // The INSERT's commit record lies past `before`: a token that covers it is past it too.
      const [{ covers }] = (await adminQuery<{ covers: boolean }>('primary', 'SELECT $1::pg_lsn > $2::pg_lsn AS covers', [token, before])) as [{ covers: boolean }];
      expect(covers).toBe(true);
    } finally {
      await t?.close();
      await Promise.all(relays.map((r) => r.close()));
    }
  });
});
