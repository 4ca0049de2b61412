import { PoolAcquireTimeoutError, PoolConfigurationError, type PoolModuleRootOptions } from 'nestjs-pg-pools';
import { startApp, startupError, type TestApp } from '../support/app.js';
import { clusterConfig, nodeOptions } from '../support/cluster.js';
import { expectNoSessionsLeft } from '../support/sessions.js';
import { TcpRelay } from '../support/tcp-relay.js';
import { within } from '../support/wait.js';

// Every acquire is bounded by acquireTimeoutMs: a full pool, a full replica pool and a server
// that accepts TCP but never answers all end in a PoolAcquireTimeoutError that names the
// database, pool and role and shows the pool's counts. Nothing hangs.

const APP = 'e2e-hygiene-acquire';

/** The suite's pool options: the test preset, this file's application name, and `extra`. */
const options = (extra: Partial<PoolModuleRootOptions>): PoolModuleRootOptions => ({ preset: 'test', applicationName: APP, ...extra });
const STATE = /\(total=\d+ idle=\d+ in-use=\d+ waiting=\d+ max=\d+\)/;

function gate(): { wait: Promise<void>; open: () => void } {
  let open!: () => void;
  const wait = new Promise<void>((resolve) => (open = resolve));
  return { wait, open };
}

describe('finite acquire timeout (real primary and replica)', () => {
  let t: TestApp;

  beforeAll(async () => {
    t = await startApp(options({
      primary: nodeOptions('primary'),
      replicas: [nodeOptions('replica1')],
      // Both connections open at start: a holder never has to open one within the 300 ms budget
      // (a scram login can take longer than that on 2 loaded cores).
      min: 2,
      max: 2,
      acquireTimeoutMs: 300,
    }));
  }, 30_000);

  afterAll(async () => {
    await t?.close();
    await expectNoSessionsLeft(APP);
  }, 30_000);

  it('gives every waiting caller of a full primary pool a PoolAcquireTimeoutError naming the pool and its counts', async () => {
    const held = gate();
    const holders = [0, 1].map(() => t.db.withClient(() => held.wait));
    try {
      await within('pool full', 5000, (async () => {
        while (t.db.primary.pool.totalCount - t.db.primary.pool.idleCount < 2) await new Promise((r) => setTimeout(r, 10));
      })());
      const started = Date.now();
      const results = await within('waiting callers', 5000, Promise.allSettled([1, 2, 3].map(() => t.db.query('SELECT 1'))));
      const elapsed = Date.now() - started;
      expect(elapsed).toBeGreaterThanOrEqual(250);
      expect(elapsed).toBeLessThan(2000);
      for (const r of results) {
        expect(r.status).toBe('rejected');
        const err = (r as PromiseRejectedResult).reason as PoolAcquireTimeoutError;
        expect(err).toBeInstanceOf(PoolAcquireTimeoutError);
        expect(err).toMatchObject({ name: 'PoolAcquireTimeoutError', code: 'POOL_ACQUIRE_TIMEOUT', database: 'default', node: 'primary', role: 'primary' });
        expect(err.state).toMatchObject({ total: 2, idle: 0, inUse: 2, max: 2 });
        expect(err.message).toMatch(/^Cannot acquire a connection from pool "default\/primary" \(primary\) because none became available within \d+ms /);
        expect(err.message).toMatch(STATE);
        expect(err.message).toContain('Please make sure that clients are released, or raise max / acquireTimeoutMs.');
      }
      expect(t.cluster.primary.counters.acquireTimeouts).toBe(3);
    } finally {
      held.open();
      await Promise.all(holders);
    }
    expect((await t.db.query('SELECT 1 AS ok')).rows[0].ok).toBe(1);
    expect(t.db.primary.pool.waitingCount).toBe(0);
  }, 15_000);

  it('names the replica pool and role when a replica pool is full', async () => {
    const held = gate();
    const holder = t.db.withClient(() => held.wait, { readOnly: true });
    const second = t.db.withClient(() => held.wait, { readOnly: true });
    try {
      const replicaPool = t.db.replica.pools[0]!;
      await within('replica pool full', 5000, (async () => {
        while (replicaPool.totalCount - replicaPool.idleCount < 2) await new Promise((r) => setTimeout(r, 10));
      })());
      const err = await within('replica acquire', 5000, t.db.replica.query('SELECT 1').then(
        () => undefined,
        (e: unknown) => e,
      ));
      expect(err).toBeInstanceOf(PoolAcquireTimeoutError);
      expect(err).toMatchObject({ database: 'default', node: 'replica-1', role: 'replica', state: { total: 2, idle: 0, inUse: 2, max: 2 } });
      expect((err as Error).message).toContain('"default/replica-1" (replica)');
    } finally {
      held.open();
      await Promise.all([holder, second]);
    }
  }, 15_000);

  it('times out a connection attempt to a server that accepts TCP but never answers', async () => {
    const relay = await new TcpRelay(clusterConfig.host, clusterConfig.primary.port).start();
    relay.freeze();
    const silent = await startApp({
      preset: 'test',
      applicationName: `${APP}-silent`,
      primary: { ...nodeOptions('primary'), port: relay.port },
      lazy: true,
      min: 0,
      max: 2,
      acquireTimeoutMs: 400,
    });
    try {
      const started = Date.now();
      const err = await within('acquire from a silent server', 5000, silent.db.query('SELECT 1').then(
        () => undefined,
        (e: unknown) => e,
      ));
      expect(Date.now() - started).toBeLessThan(2000);
      expect(err).toBeInstanceOf(PoolAcquireTimeoutError);
      expect(err).toMatchObject({ node: 'primary', role: 'primary' });
      expect((err as Error).message).toMatch(STATE);
      expect(JSON.stringify(err) + (err as Error).message).not.toContain(clusterConfig.password);
    } finally {
      await silent.close();
      await relay.close();
    }
  }, 15_000);

  it('rejects a zero, fractional, too long (Node would fire it after 1 ms) or infinite acquire timeout at startup with one error naming the field', async () => {
    for (const bad of [0, 1.5, 3e9, Number.POSITIVE_INFINITY]) {
      const err = await startupError({ applicationName: `${APP}-config`, primary: nodeOptions('primary'), acquireTimeoutMs: bad, lazy: true });
      expect(err).toBeInstanceOf(PoolConfigurationError);
      expect((err as Error).message).toMatch(/^Invalid option `acquireTimeoutMs`: expected an integer from 1 to 2147483647 \(the longest delay a Node\.js timer can wait, about 24\.8 days\), got /);
    }
  });
});
