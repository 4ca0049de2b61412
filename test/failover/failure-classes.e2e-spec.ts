import { PoolStatementTimeoutError } from 'nestjs-pg-pools';
import { startApp } from '../support/app.js';
import { adminQuery, nodeOptions, pgNodeAt, replicaOptions, type PgNodeName } from '../support/cluster.js';
import { sessionCount, sessionCounts } from '../support/sessions.js';
import { waitFor } from '../support/wait.js';

// Failures read as what they are (docs/failover.md, "Failure handling"), on the real primary + 2 replicas:
// a statement past its client-side deadline is cancelled on the server; a slow read is not a dead
// replica (test/failover/failure-server-full.e2e-spec.ts: a full server).

const APP = 'e2e-failure-classes';

async function runningStatements(node: PgNodeName, like: string): Promise<number> {
  const rows = await adminQuery<{ n: number }>(node, "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1 AND state = 'active' AND query LIKE $2", [APP, like]);
  return rows[0]!.n;
}

describe('failure classes (real cluster)', () => {
  afterAll(async () => {
    await waitFor('no session left', async () => Object.values(await sessionCounts(APP)).every((n) => n === 0), 5000);
  }, 15_000);

  it('(1) a statement past queryTimeoutMs is cancelled on the server: gone ≤ 1 s after the caller’s error, no uncounted session', async () => {
    const t = await startApp({ preset: 'test', applicationName: APP, primary: nodeOptions('primary', { min: 1, max: 4 }), queryTimeoutMs: 1000 });
    try {
      const err = await t.db.query('SELECT pg_sleep(10)').then(() => undefined, (e: unknown) => e);
      const failedAt = Date.now();
      expect(err).toBeInstanceOf(PoolStatementTimeoutError);
      await waitFor('pg_sleep(10) gone from pg_stat_activity', async () => (await runningStatements('primary', '%pg_sleep(10)%')) === 0, 5000, 20);
      const goneMs = Date.now() - failedAt;
      process.stdout.write(`\n(1) pg_sleep(10) gone from pg_stat_activity ${goneMs} ms after the caller's PoolStatementTimeoutError\n`);
      expect(goneMs).toBeLessThanOrEqual(1000);
      // Every session of the app on the server is one the pool counts.
      await waitFor('sessions = pool size', async () => (await sessionCount('primary', APP, { poolOnly: true })) === t.db.primary.pool.totalCount, 1000, 20);
    } finally {
      await t.close();
    }
  }, 20_000);

  it('(2) a slow read on a replica bans nothing and runs once; the next reads land on replicas', async () => {
    const t = await startApp({
      preset: 'test',
      applicationName: APP,
      primary: nodeOptions('primary', { min: 1, max: 4 }),
      replicas: replicaOptions({ min: 1, max: 4 }),
      queryTimeoutMs: 1000,
      routing: { replicaBanMs: 30_000 },
    });
    try {
      const started = Date.now();
      const err = await t.db.replica.query('SELECT pg_sleep(4)').then(() => undefined, (e: unknown) => e);
      const elapsed = Date.now() - started;
      expect(err).toBeInstanceOf(PoolStatementTimeoutError);
      // Not retried on another node: one deadline, not two or three.
      expect(elapsed).toBeLessThan(2000);
      expect(t.cluster.replicas.map((r) => r.bannedUntil)).toEqual([0, 0]);
      expect(t.events.filter((e) => e.type === 'replica-banned')).toHaveLength(0);
      await waitFor('no copy of the slow read left', async () => {
        const left = await Promise.all((['primary', 'replica1', 'replica2'] as const).map((n) => runningStatements(n, '%pg_sleep(4)%')));
        return left.every((n) => n === 0);
      }, 1000, 20);
      const ports = [];
      for (let i = 0; i < 10; i++) ports.push(pgNodeAt((await t.db.replica.query<{ port: number }>('SELECT inet_server_port() AS port')).rows[0]!.port));
      expect(ports.filter((p) => p === 'primary')).toEqual([]);
      expect(new Set(ports)).toEqual(new Set(['replica1', 'replica2']));
    } finally {
      await t.close();
    }
  }, 20_000);
});
