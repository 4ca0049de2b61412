import { jest } from '@jest/globals';
import { type INestApplication } from '@nestjs/common';
import request from 'supertest';
import { DatabaseService, PrimaryUnavailableError, type PoolEvent } from 'nestjs-pg-pools';
import { isConnectionError, isSessionTerminated, neverSent } from '../../lib/errors/sql-state.js';
import { adminQuery, clusterCtl, pgNodeAt, type PgNodeName } from '../support/cluster.js';
import { sleep, waitFor } from '../support/wait.js';
import { failoverOptions, rebuildWithTable } from '../support/failover.js';
import { buildApp } from '../support/app.js';

// Writes held through a role change (failover.holdWritesMs, on by default), on the real cluster:
// a planned switch as a failover manager does it — the primary shut down (fast: in-flight
// statements are terminated with 57P01 and rolled back, new connections get 57P03, then refused),
// replica1 promoted 1 s later. Under 4 writer loops + a transaction loop + 4 reader loops, every
// option at its default: not one write fails, none takes longer than the bound, every
// acknowledged write is on replica1, and the hold shows in events and metrics. Without a new
// primary a held write gives up at the bound with PrimaryUnavailableError. The initial topology
// is rebuilt in a finally.

const APP = 'e2e-failover-hold-writes';
const TABLE = 'failover_hold_writes_e2e';
const HOLD_MS = 5000;

jest.setTimeout(120_000);

async function startApp(failover: Record<string, unknown> = {}): Promise<INestApplication> {
  const t = await buildApp(failoverOptions(APP, { failover }));
  return t.app;
}

describe('failover: writes held through a role change (real cluster)', () => {
  beforeAll(async () => {
    await rebuildWithTable(TABLE);
  });

  afterAll(async () => {
    await clusterCtl('rebuild');
    await adminQuery('primary', `DROP TABLE IF EXISTS ${TABLE}`);
  });

  it('primary shut down, replica1 promoted 1 s later: 0 failed writes or transactions (but those lost in flight at the shutdown), each within the bound, all on replica1', async () => {
    const app = await startApp();
    const db = app.get(DatabaseService);
    const events: PoolEvent[] = [];
    const subscription = db.events$.subscribe((e) => events.push(e));
    const acks: Array<{ id: number; node: PgNodeName; at: number; ms: number }> = [];
    const failures: Array<{ at: number; message: string; code?: string }> = [];
    // Statements in flight when the primary shut down whose connection was lost with no answer: their
    // outcome is unknown, so they fail (never run again). At most one per loop, at the shutdown.
    const lostInFlight: number[] = [];
    // A single statement terminated with 57P01 is run again by the library (never a failure); in a
    // transaction only BEGIN is, so a 57P01 inside the callback (rolled back, reported) is lost in flight.
    const fail = (err: unknown, label = '') => {
      const inTransaction = label !== '';
      if (isConnectionError(err) && !neverSent(err) && (inTransaction || !isSessionTerminated(err))) lostInFlight.push(Date.now());
      else failures.push({ at: Date.now(), message: `${label}${(err as Error).message}`, code: (err as { code?: string }).code });
    };
    let reads = 0;
    const readFailures: string[] = [];
    let running = true;
    const deadline = Date.now() + 60_000;
    const writer = async () => {
      while (running && Date.now() < deadline) {
        const t0 = Date.now();
        try {
          const res = await db.query<{ id: number; port: number }>(`INSERT INTO ${TABLE} (v) VALUES (1) RETURNING id, inet_server_port() AS port`);
          acks.push({ id: res.rows[0]!.id, node: pgNodeAt(res.rows[0]!.port), at: Date.now(), ms: Date.now() - t0 });
        } catch (err) {
          fail(err);
          await sleep(20);
        }
        await sleep(5);
      }
    };
    const transactions = async () => {
      while (running && Date.now() < deadline) {
        const t0 = Date.now();
        try {
          const row = await db.transaction(async (tx) => {
            const res = await tx.query<{ id: number; port: number }>(`INSERT INTO ${TABLE} (v) VALUES (2) RETURNING id, inet_server_port() AS port`);
            return res.rows[0]!;
          });
          acks.push({ id: row.id, node: pgNodeAt(row.port), at: Date.now(), ms: Date.now() - t0 });
        } catch (err) {
          fail(err, 'transaction: ');
          await sleep(20);
        }
        await sleep(5);
      }
    };
    const reader = async () => {
      while (running && Date.now() < deadline) {
        await db.replica.query('SELECT 1').then(
          () => reads++,
          (err: Error) => readFailures.push(err.message),
        );
        await sleep(5);
      }
    };
    const loops = [writer(), writer(), writer(), writer(), transactions(), reader(), reader(), reader(), reader()];
    let stoppedAt = 0;
    let promotedAt = 0;
    try {
      await waitFor('writes on the primary', () => acks.filter((a) => a.node === 'primary').length >= 40, 10_000);
      stoppedAt = Date.now();
      await clusterCtl('node-stop', 'primary', 'fast');
      await sleep(Math.max(0, stoppedAt + 1000 - Date.now()));
      await clusterCtl('promote', 'replica1');
      promotedAt = Date.now();
      await waitFor('50 writes on replica1', () => acks.filter((a) => a.node === 'replica1').length >= 50, 15_000);
    } finally {
      running = false;
      await Promise.all(loops);
      subscription.unsubscribe();
    }
    const slowest = Math.max(...acks.map((a) => a.ms));
    const held = events.filter((e) => e.type === 'write-held');
    const firstOnReplica1 = acks.find((a) => a.node === 'replica1')!;
    console.log(
      `hold writes: primary stopped, replica1 promoted ${promotedAt - stoppedAt}ms later; ${acks.length} writes acknowledged, ${failures.length} failed, ${lostInFlight.length} lost in flight ` +
        `(${failures[0]?.message ?? '-'}); slowest ${slowest}ms; ${held.length} held (longest ${Math.max(0, ...held.map((e) => (e as { waitedMs: number }).waitedMs))}ms); ` +
        `first write on replica1 ${firstOnReplica1.at - promotedAt}ms after the promotion; ${reads} reads, ${readFailures.length} failed`,
    );
    try {
      expect(failures).toEqual([]);
      expect(lostInFlight.length).toBeLessThanOrEqual(5);
      for (const at of lostInFlight) expect(at - stoppedAt).toBeLessThan(1000);
      expect(readFailures).toEqual([]);
      expect(slowest).toBeLessThanOrEqual(HOLD_MS + 500);
      expect(held.length).toBeGreaterThan(0);
      expect(held.every((e) => (e as { outcome: string }).outcome === 'sent' && e.node === 'replica-1')).toBe(true);
      expect(acks.filter((a) => a.at > promotedAt + 1000).every((a) => a.node === 'replica1')).toBe(true);
      // Every acknowledged write since the stop is on replica1.
      const since = acks.filter((a) => a.at > stoppedAt).map((a) => a.id);
      const present = await adminQuery<{ id: number }>('replica1', `SELECT id FROM ${TABLE} WHERE id = ANY($1::int[])`, [since]);
      expect(present.length).toBe(since.length);
      const prom = (await request(app.getHttpServer()).get('/metrics').expect(200)).text;
      const heldTotal = /^db_writes_held_total\{database="default",node="replica-1",role="primary",outcome="held"\} (\d+)$/m.exec(prom);
      expect(Number(heldTotal?.[1])).toBe(held.length);
    } finally {
      await app.close();
    }
  });

  it('with no new primary, a held write gives up at the bound with PrimaryUnavailableError', async () => {
    await clusterCtl('rebuild');
    const app = await startApp({ holdWritesMs: 1500 });
    const db = app.get(DatabaseService);
    try {
      await db.query('SELECT 1');
      await clusterCtl('node-stop', 'primary', 'fast');
      const t0 = Date.now();
      const err = await db.query(`INSERT INTO ${TABLE} (v) VALUES (3)`).then(() => undefined, (e: unknown) => e);
      const waited = Date.now() - t0;
      console.log(`hold writes: no primary, the write failed after ${waited}ms`);
      expect(err).toBeInstanceOf(PrimaryUnavailableError);
      expect(waited).toBeGreaterThanOrEqual(1400);
      expect(waited).toBeLessThan(1500 + 1000);
      // Reads are not held: they go on on the replicas.
      await expect(db.replica.query('SELECT pg_is_in_recovery() AS ro')).resolves.toMatchObject({ rows: [{ ro: true }] });
    } finally {
      await app.close();
      await clusterCtl('node-start', 'primary');
    }
  });
});
