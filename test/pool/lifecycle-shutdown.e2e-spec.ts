import { jest } from '@jest/globals';
import { type TestingModule } from '@nestjs/testing';
import type { Pool } from 'pg';
import { DatabaseService, PoolModule, getDatabaseToken, getPoolToken, type PoolModuleRootOptions } from 'nestjs-pg-pools';
import { clusterConfig, nodeOptions, pgNodeNames, replicaOptions } from '../support/cluster.js';
import { librarySessions, poolSessionCounts, waitUntil } from '../support/foundation-db.js';
import { CapturingLogger } from '../support/logger.js';
import { terminateSessionPids } from '../support/sessions.js';
import { WHO_ANSWERS, type Answer } from '../support/foundation-probe.js';
import { closeModule, closeStartedModules, startModules } from '../support/app.js';

jest.setTimeout(15_000);

const APP = 'fnd-lifecycle-shutdown';
const { primary, replica1, replica2 } = clusterConfig.ports;

let seq = 0;

function options(extra: Partial<PoolModuleRootOptions> = {}): PoolModuleRootOptions {
  return { primary: nodeOptions('primary'), replicas: replicaOptions(), applicationName: `${APP}-${++seq}`, min: 2, max: 4, sizingAdvisor: false, env: {}, ...extra };
}

const start = (roots: PoolModuleRootOptions[], logger?: CapturingLogger): Promise<TestingModule> => startModules(roots.map((o) => PoolModule.forRoot(o)), logger);
const close = closeModule;

afterEach(closeStartedModules);

/** Wraps `end()` of every pool of a database to count the calls. */
function countEnds(app: TestingModule, name?: string): { pools: Pool[]; ends: number[] } {
  const pools = [app.get<Pool>(getPoolToken(name, 'primary')), ...app.get<Pool[]>(getPoolToken(name, 'replicas'))];
  const ends = pools.map(() => 0);
  pools.forEach((pool, i) => {
    const end = pool.end.bind(pool) as () => Promise<void>;
    pool.end = (() => {
      ends[i]!++;
      return end();
    }) as Pool['end'];
  });
  return { pools, ends };
}

describe('app.close()', () => {
  it('ends every pool of every database exactly once and leaves no server connection behind', async () => {
    const main = options();
    const analytics = options({ name: 'analytics', replicas: [replicaOptions()[1]!] });
    const app = await start([main, analytics]);
    expect(await poolSessionCounts(main.applicationName!)).toEqual({ primary: 2, replica1: 2, replica2: 2 });
    expect(await poolSessionCounts(analytics.applicationName!)).toEqual({ primary: 2, replica1: 0, replica2: 2 });
    const mainEnds = countEnds(app);
    const analyticsEnds = countEnds(app, 'analytics');

    await close(app);
    await app.close();

    expect(mainEnds.ends).toEqual([1, 1, 1]);
    expect(analyticsEnds.ends).toEqual([1, 1]);
    for (const pool of [...mainEnds.pools, ...analyticsEnds.pools]) {
      expect(pool.ended).toBe(true);
      expect(pool.totalCount).toBe(0);
    }
    expect(await waitUntil(() => librarySessions(main.applicationName!), (n) => n === 0)).toBe(0);
    expect(await waitUntil(() => librarySessions(analytics.applicationName!), (n) => n === 0)).toBe(0);
  });

  it('waits for a checked-out client to come back before ending the pool', async () => {
    const opts = options({ replicas: [], shutdownTimeoutMs: 5000 });
    const app = await start([opts]);
    const db = app.get(DatabaseService);
    let finished = false;
    const work = db.withClient(async (client) => {
      await client.query('SELECT pg_sleep(0.3)');
      finished = true;
      return 'committed';
    });
    await waitUntil(() => app.get<Pool>(getPoolToken()).idleCount, (idle) => idle === 1, 2000, 5);
    const took = await close(app);
    expect(await work).toBe('committed');
    expect(finished).toBe(true);
    expect(took).toBeGreaterThanOrEqual(200);
    expect(took).toBeLessThan(3000);
    expect(await waitUntil(() => librarySessions(opts.applicationName!), (n) => n === 0)).toBe(0);
  });

  it('shutdownTimeoutMs bounds the wait for a client that is never given back', async () => {
    const logger = new CapturingLogger();
    const opts = options({ replicas: [], shutdownTimeoutMs: 300 });
    const app = await start([opts], logger);
    const pool = app.get<Pool>(getPoolToken());
    const leaked = await pool.connect();
    let never: Promise<number> | undefined;
    try {
      never = close(app);
      const took = await Promise.race([never, new Promise<number>((resolve) => setTimeout(() => resolve(-1), 5000).unref())]);
      expect(took).toBeGreaterThanOrEqual(250);
      expect(took).toBeLessThan(3000);
      expect(logger.messages('warn')).toContain(`Ending pool "default/primary" with 1 client(s) still checked out after 300ms.`);
      expect(await waitUntil(() => librarySessions(opts.applicationName!), (n) => n === 0)).toBe(0);
    } finally {
      leaked.release();
      await never;
    }
  });
});

describe('a killed idle connection', () => {
  it('does not crash the app, and the next queries succeed on every server', async () => {
    const opts = options();
    const logger = new CapturingLogger();
    const app = await start([opts], logger);
    const db = app.get(DatabaseService);
    const replicaPools = app.get<Pool[]>(getPoolToken(undefined, 'replicas'));
    const pools = [app.get<Pool>(getPoolToken()), ...replicaPools];
    const removed = pools.map(() => 0);
    pools.forEach((pool, i) => pool.on('remove', () => removed[i]!++));
    const killedPerServer = await Promise.all(pgNodeNames.map((node) => terminateSessionPids(node, opts.applicationName!, true)));
    // 2 per server; a 57P01 on one connection may make the pool close its idle sibling first.
    expect(killedPerServer.flat().length).toBeGreaterThanOrEqual(3);
    // Give every pool (not only the primary's) time to see its connections die while idle: a raw
    // pg.Pool that has not read the server's 57P01 yet hands the dead client to the next query.
    const seen = () => pools.every((_, i) => removed[i]! >= killedPerServer[i]!.length);
    await waitUntil(seen, (done) => done, 5000);
    expect(removed.map((n, i) => n >= killedPerServer[i]!.length)).toEqual([true, true, true]);

    const answer = (await db.query<Answer>(WHO_ANSWERS)).rows[0]!;
    expect(answer).toMatchObject({ port: primary, inRecovery: false });
    const replicaAnswers = await Promise.all(replicaPools.map(async (pool) => (await pool.query<Answer>(WHO_ANSWERS)).rows[0]!.port));
    expect(replicaAnswers).toEqual([replica1, replica2]);
    for (let i = 0; i < 4; i++) await expect(db.replica.query('SELECT 1 AS ok')).resolves.toMatchObject({ rows: [{ ok: 1 }] });
    expect(logger.text).not.toContain(clusterConfig.password);
  });

  it('a connection killed while checked out fails only its own caller; the pool recovers', async () => {
    const opts = options({ replicas: [] });
    const app = await start([opts]);
    const db = app.get(DatabaseService);
    const failure = db.withClient(async (client) => {
      const pid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      const { rows } = await db.primary.query<{ killed: boolean }>('SELECT pg_terminate_backend($1) AS killed', [pid]);
      expect(rows[0]!.killed).toBe(true);
      await new Promise((resolve) => setTimeout(resolve, 100));
      return client.query('SELECT 1');
    });
    await expect(failure).rejects.toThrow();
    const pool = app.get<Pool>(getPoolToken());
    expect(pool.totalCount - pool.idleCount).toBe(0);
    await expect(db.query('SELECT 1 AS ok')).resolves.toMatchObject({ rows: [{ ok: 1 }] });
    const db2 = app.get<DatabaseService>(getDatabaseToken());
    await expect(db2.transaction((tx) => tx.query('SELECT 2 AS ok'))).resolves.toMatchObject({ rows: [{ ok: 2 }] });
  });
});
