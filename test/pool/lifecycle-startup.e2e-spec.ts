import { jest } from '@jest/globals';
import { DatabaseService, PoolConnectionError, PoolModule, recommendPoolSize, type NodeOptions, type PoolModuleRootOptions } from 'nestjs-pg-pools';
import { clusterConfig, nodeOptions, replicaOptions } from '../support/cluster.js';
import { captureOutput, librarySessions, nodeUrl, poolSessionCounts, totalSessions } from '../support/foundation-db.js';
import { CapturingLogger } from '../support/logger.js';
import { expectNoSessionsLeft } from '../support/sessions.js';
import { WHO_ANSWERS, type Answer } from '../support/foundation-probe.js';
import { closeModule, closeStartedModules, startModules } from '../support/app.js';

jest.setTimeout(15_000);

const APP = 'fnd-lifecycle-startup';
const { primary, replica1, replica2 } = clusterConfig.ports;
/** Nothing listens here on loopback: connections are refused at once. */
const CLOSED_PORT = 1;

let seq = 0;

function options(extra: Partial<PoolModuleRootOptions>): PoolModuleRootOptions {
  return { primary: nodeOptions('primary'), applicationName: `${APP}-${++seq}`, env: {}, ...extra } as PoolModuleRootOptions;
}

const start = startModules;

afterEach(closeStartedModules);

describe('warm-up', () => {
  it('opens min connections on the primary and on every replica before the app starts', async () => {
    const opts = options({ replicas: replicaOptions(), min: 3, max: 6 });
    await start([PoolModule.forRoot(opts)]);
    expect(await poolSessionCounts(opts.applicationName!)).toEqual({ primary: 3, replica1: 3, replica2: 3 });
  });

  it('lazy: true opens nothing at start (not even for the sizing advisor or the lag monitor), then connects on demand', async () => {
    const opts = options({ replicas: replicaOptions(), min: 3, lazy: true, instances: 50, routing: { lagCheckIntervalMs: 50 } });
    const logger = new CapturingLogger();
    const app = await start([PoolModule.forRoot(opts)], logger);
    // Longer than the housekeeper's period (at most 1 s): it does not refill a pool that was never used to min.
    await new Promise((resolve) => setTimeout(resolve, 1300));
    await expectNoSessionsLeft(opts.applicationName!);
    const answer = (await app.get(DatabaseService).query<Answer>(WHO_ANSWERS)).rows[0]!;
    expect(answer).toMatchObject({ port: primary, inRecovery: false });
    expect((await poolSessionCounts(opts.applicationName!)).primary).toBeGreaterThanOrEqual(1);
    expect(logger.messages('warn')).toEqual([]);
  });
});

describe('first connection retries', () => {
  it('retries with exponential backoff, then fails with PoolConnectionError naming host:port and the last error, no password', async () => {
    const logger = new CapturingLogger();
    const output = captureOutput();
    const opts = options({ primary: { connectionString: nodeUrl(CLOSED_PORT) }, retryAttempts: 4, retryDelayMs: 100 });
    const t0 = Date.now();
    let error: unknown;
    try {
      await start([PoolModule.forRoot(opts)], logger);
    } catch (err) {
      error = err;
    } finally {
      output.restore();
    }
    const elapsed = Date.now() - t0;
    expect(error).toBeInstanceOf(PoolConnectionError);
    expect((error as Error).message).toMatch(
      /^Cannot connect to "default\/primary" at 127\.0\.0\.1:1 after 4 attempt\(s\): (Error: )?connect ECONNREFUSED 127\.0\.0\.1:1\. Please make sure that the server is running and the connection settings are right\.$/,
    );
    expect(error).toMatchObject({ database: 'default', node: 'primary', address: '127.0.0.1:1', attempts: 4 });
    // 100 + 200 + 400 ms, each ±20 %.
    expect(elapsed).toBeGreaterThanOrEqual(560);
    expect(elapsed).toBeLessThan(3000);
    const retries = logger.messages('warn');
    expect(retries).toHaveLength(3);
    [100, 200, 400].forEach((delay, i) =>
      expect(retries[i]).toMatch(
        new RegExp(`^Connecting to "default/primary" at 127\\.0\\.0\\.1:1 failed \\(attempt ${i + 1}/4\\): .*ECONNREFUSED.*\\. Retrying in ${delay}ms\\.$`),
      ),
    );
    for (const text of [(error as Error).message, String((error as Error).stack), logger.text, output.text]) {
      expect(text).not.toContain(clusterConfig.password);
    }
    expect(await librarySessions(opts.applicationName!)).toBe(0);
  });

  it('starts when a replica is unreachable: the replica is banned and reads fall back to the primary', async () => {
    const logger = new CapturingLogger();
    const opts = options({ replicas: [nodeOptions('primary', { port: CLOSED_PORT })], min: 1, retryAttempts: 2, retryDelayMs: 20 });
    const app = await start([PoolModule.forRoot(opts)], logger);
    const answer = (await app.get(DatabaseService).replica.query<Answer>(WHO_ANSWERS)).rows[0]!;
    expect(answer).toMatchObject({ port: primary, inRecovery: false });
    expect(logger.messages('warn')).toContainEqual(expect.stringMatching(/^Replica "default\/replica-1" \(127\.0\.0\.1:1\) banned for 30000ms: .*ECONNREFUSED/));
    expect(logger.text).not.toContain(clusterConfig.password);
  });
});

describe('sizing advisor', () => {
  async function maxConnections(): Promise<number> {
    const app = await start([PoolModule.forRoot(options({ min: 1, max: 1, sizingAdvisor: false }))]);
    try {
      return Number((await app.get(DatabaseService).query<{ max_connections: string }>('SHOW max_connections')).rows[0]!.max_connections);
    } finally {
      await closeModule(app);
    }
  }

  it('warns with the numbers and a suggested max when pools × instances exceed 80% of max_connections', async () => {
    const serverMax = await maxConnections();
    expect(serverMax).toBe(clusterConfig.maxConnections);
    const budget = Math.floor(serverMax * 0.8);
    const instances = 20;
    const max = 10;
    const logger = new CapturingLogger();
    await start([PoolModule.forRoot(options({ replicas: replicaOptions(), min: 1, max, instances }))], logger);
    const suggested = Math.floor(budget / instances);
    expect(logger.messages('warn').sort()).toEqual(
      [primary, replica1, replica2].map(
        (port) =>
          `Pool sizing: 1 pool(s) on 127.0.0.1:${port} may open ${max} connections × ${instances} instance(s) = ${max * instances}, ` +
          `above 80% of max_connections (${budget} of ${serverMax}). Suggested max per pool: ${suggested} ` +
          '(or put PgBouncer in front, or raise max_connections).',
      ).sort(),
    );
  });

  it('counts every pool of the process on the same server, and reads APP_INSTANCES', async () => {
    const logger = new CapturingLogger();
    await start(
      [
        PoolModule.forRoot(options({ min: 1, max: 10, env: { APP_INSTANCES: '5' } })),
        PoolModule.forRoot(options({ name: 'analytics', min: 1, max: 30, env: { APP_INSTANCES: '5' } })),
      ],
      logger,
    );
    const budget = Math.floor(clusterConfig.maxConnections * 0.8);
    expect(logger.messages('warn')).toContain(
      `Pool sizing: 2 pool(s) on 127.0.0.1:${primary} may open 40 connections × 5 instance(s) = 200, ` +
        `above 80% of max_connections (${budget} of ${clusterConfig.maxConnections}). Suggested max per pool: ${Math.floor(budget / 10)} ` +
        '(or put PgBouncer in front, or raise max_connections).',
    );
  });

  it('stays quiet within budget, and when sizingAdvisor is false', async () => {
    const logger = new CapturingLogger();
    await start([PoolModule.forRoot(options({ min: 1, max: 10, instances: 2 }))], logger);
    await start([PoolModule.forRoot(options({ min: 1, max: 10, instances: 500, sizingAdvisor: false }))], logger);
    expect(logger.messages('warn')).toEqual([]);
  });

  it('recommendPoolSize is cores × 2 + spindles', () => {
    expect(recommendPoolSize({ cores: 4, spindles: 1 })).toBe(9);
    expect(recommendPoolSize({ cores: 16, spindles: 0 })).toBe(32);
  });
});

describe('allowExitOnIdle (a pg.PoolConfig field, passed through)', () => {
  /** Open TCP sockets that keep the event loop alive (Node lists only ref'd handles). */
  const refTcpSockets = () => process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap').length;

  it('true: idle connections are unref\'d and a checked-out one is ref\'d, so an idle pool never keeps the process alive', async () => {
    const before = refTcpSockets();
    const node = (n: NodeOptions) => ({ ...n, allowExitOnIdle: true });
    const opts = options({ primary: node(nodeOptions('primary')), replicas: replicaOptions().map(node), min: 2, max: 4, sizingAdvisor: false });
    const app = await start([PoolModule.forRoot(opts)]);
    const db = app.get(DatabaseService);
    expect(await totalSessions(opts.applicationName!)).toBe(6);
    await db.query('SELECT 1');
    expect(refTcpSockets()).toBe(before);
    await db.withClient(async () => {
      expect(refTcpSockets()).toBe(before + 1);
    });
    expect(refTcpSockets()).toBe(before);
  });

  it('default (pg\'s false): idle connections stay ref\'d and keep the process alive until app.close()', async () => {
    const before = refTcpSockets();
    const app = await start([PoolModule.forRoot(options({ min: 2, max: 2, sizingAdvisor: false }))]);
    await app.get(DatabaseService).query('SELECT 1');
    expect(refTcpSockets()).toBe(before + 2);
  });
});
