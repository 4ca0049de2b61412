import { jest } from '@jest/globals';
import { type INestApplication } from '@nestjs/common';
import { DatabaseService, type PoolEvent } from 'nestjs-pg-pools';
import { adminQuery, clusterConfig, clusterCtl, pgNodeAt, type PgNodeName } from '../support/cluster.js';
import { sleep, waitFor } from '../support/wait.js';
import { failoverOptions, rebuildWithTable } from '../support/failover.js';
import { buildApp } from '../support/app.js';

// Lag is measured against the current primary. The primary is stopped hard and stays down longer
// than maxReplicationLagMs (the outage), then replica1 is promoted and replica2 re-pointed at it
// (primary_conninfo + reload, as Patroni does). replica2 replayed everything there was: it must
// never count as lagging, so with fallbackToPrimary: false not one read fails, and reads are back
// on replica2 as soon as it replays the new primary's WAL. The initial topology is rebuilt in a finally.

const APP = 'e2e-failover-lag-history';
const TABLE = 'failover_lag_history_e2e';
const MAX_LAG_MS = 2000;

jest.setTimeout(120_000);

async function startApp(): Promise<INestApplication> {
  const t = await buildApp(failoverOptions(APP, { acquireTimeoutMs: 2000, routing: { maxReplicationLagMs: MAX_LAG_MS, lagCheckIntervalMs: 100, fallbackToPrimary: false } }));
  return t.app;
}

describe('failover: lag is measured against the new primary (real cluster)', () => {
  let app: INestApplication | undefined;

  beforeAll(async () => {
    await rebuildWithTable(TABLE, 'replica2');
    // replica2 follows replica1 after the promotion with its own slot there.
    await adminQuery('replica1', "SELECT pg_create_physical_replication_slot('replica2', true) WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = 'replica2')");
    app = await startApp();
  });

  afterAll(async () => {
    try {
      await app?.close();
    } finally {
      await clusterCtl('rebuild');
      await adminQuery('primary', `DROP TABLE IF EXISTS ${TABLE}`);
    }
  });

  it('an outage longer than maxReplicationLagMs is not lag: 0 failed reads with fallbackToPrimary false, reads stay on replica2', async () => {
    const db = app!.get(DatabaseService);
    const events: PoolEvent[] = [];
    const subscription = db.events$.subscribe((e) => events.push(e));
    const reads: Array<{ at: number; node: PgNodeName }> = [];
    const readErrors: Array<{ at: number; message: string }> = [];
    let writes = 0;
    let running = true;
    const deadline = Date.now() + 60_000;
    const reader = async () => {
      while (running && Date.now() < deadline) {
        try {
          const res = await db.replica.query<{ port: number }>('SELECT inet_server_port() AS port');
          reads.push({ at: Date.now(), node: pgNodeAt(res.rows[0]!.port) });
        } catch (err) {
          readErrors.push({ at: Date.now(), message: (err as Error).message });
        }
        await sleep(10);
      }
    };
    const writer = async () => {
      while (running && Date.now() < deadline) {
        await db.query(`INSERT INTO ${TABLE} (v) VALUES (1)`).then(() => writes++, () => sleep(50));
        await sleep(5);
      }
    };
    const loops = [reader(), reader(), reader(), writer(), writer()];
    let promotedAt = 0;
    try {
      await waitFor('writes and reads under way', () => writes >= 50 && reads.length >= 50, 10_000);
      await clusterCtl('node-stop', 'primary', 'immediate');
      await sleep(MAX_LAG_MS + 1500);
      await clusterCtl('promote', 'replica1');
      promotedAt = Date.now();
      const { host, ports } = clusterConfig;
      await adminQuery(
        'replica2',
        `ALTER SYSTEM SET primary_conninfo = 'host=${host} port=${ports.replica1} user=${clusterConfig.env.PG_REPLICATION_USER} password=${clusterConfig.env.PG_REPLICATION_PASSWORD} application_name=replica2'`,
      );
      await adminQuery('replica2', 'SELECT pg_reload_conf()');
      await waitFor('replica2 streaming from replica1', async () => (await adminQuery('replica1', "SELECT 1 FROM pg_stat_replication WHERE application_name = 'replica2' AND state = 'streaming'")).length > 0, 20_000);
      const since = Date.now();
      await waitFor('200 more reads', () => reads.filter((r) => r.at > since).length >= 200, 10_000);
    } finally {
      running = false;
      await Promise.all(loops);
      subscription.unsubscribe();
    }
    console.log(`lag history: ${reads.length} reads, ${readErrors.length} failed (${readErrors[0]?.message ?? '-'}), ${writes} writes`);
    expect(events.some((e) => e.type === 'primary-changed' && e.node === 'replica-1')).toBe(true);
    expect(readErrors.slice(0, 3)).toEqual([]);
    // After the promotion every read is on replica2 (replica1 took the writes).
    expect(reads.filter((r) => r.at > promotedAt + 1000).every((r) => r.node === 'replica2')).toBe(true);
  });
});
