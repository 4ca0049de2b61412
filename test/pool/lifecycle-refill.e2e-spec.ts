import { PoolConnectionError, type PoolModuleRootOptions } from 'nestjs-pg-pools';
import { startApp, startupError } from '../support/app.js';
import { clusterConfig, nodeOptions } from '../support/cluster.js';
import { expectNoSessionsLeft } from '../support/sessions.js';
import { TcpRelay } from '../support/tcp-relay.js';
import { sleep, waitFor } from '../support/wait.js';

// Start-up and background refill against real servers, "the network" of a node taken away by a
// relay that counts every connection attempt (no shared server is stopped): a rejected start
// leaves no loop behind, and a banned replica is not refilled until a probe lifts the ban.

const APP = 'e2e-lifecycle-refill';

/** The suite's pool options: the test preset, this file's application name, and `extra`. */
const options = (extra: Partial<PoolModuleRootOptions>): PoolModuleRootOptions => ({ preset: 'test', applicationName: APP, ...extra });
/** No lag polling: every connection attempt a relay counts comes from the pool or the node monitor. */
const QUIET = { routing: { lagCheckIntervalMs: 60_000 } } as const;

describe('start-up and refill (real servers behind relays)', () => {
  afterAll(() => expectNoSessionsLeft(APP));

  it('a rejected start stops every warm-up and refill loop it began, on every node', async () => {
    const primary = await new TcpRelay(clusterConfig.host, clusterConfig.primary.port).start();
    const silent = await new TcpRelay(clusterConfig.host, clusterConfig.replica1.port).start();
    const refusing = await new TcpRelay(clusterConfig.host, clusterConfig.replica2.port).start();
    const relays = [primary, silent, refusing];
    try {
      primary.reject();
      silent.freeze();
      refusing.reject();
      const err = await startupError(options({
        primary: { ...nodeOptions('primary'), port: primary.port },
        replicas: [
          { ...nodeOptions('replica1'), port: silent.port },
          { ...nodeOptions('replica2'), port: refusing.port },
        ],
        min: 2,
        max: 4,
        retryAttempts: 3,
        retryDelayMs: 100,
        connectTimeoutMs: 1500,
        ...QUIET,
      }));
      expect(err).toBeInstanceOf(PoolConnectionError);
      // Each warm-up attempt may retry a reset connect once more at once; never a background loop beside it.
      expect(primary.accepted).toBeGreaterThanOrEqual(3);
      expect(primary.accepted).toBeLessThanOrEqual(9);
      expect(refusing.accepted).toBeGreaterThanOrEqual(1);
      const after = relays.map((r) => r.accepted);
      // Longer than the warm-up backoff (100, 200 ms), the refill's (≤ 500 ms) and one connect timeout.
      await sleep(2000);
      expect(relays.map((r) => r.accepted)).toEqual(after);
    } finally {
      for (const r of relays) await r.close();
    }
  }, 20_000);

  it('a banned replica is not refilled until a probe lifts the ban, then refills to min', async () => {
    const relay = await new TcpRelay(clusterConfig.host, clusterConfig.replica1.port).start();
    const t = await startApp(options({
      primary: nodeOptions('primary'),
      replicas: [{ ...nodeOptions('replica1'), port: relay.port }],
      min: 2,
      max: 4,
      breaker: { failureThreshold: 1000, resetTimeoutMs: 60_000 },
      ...QUIET,
      // No role checks either (they open a connection of their own, outside the pool).
      failover: { discoverRoles: false },
      routing: { ...QUIET.routing, replicaBanMs: 2000, fallbackToPrimary: true },
    }));
    try {
      const replica = t.cluster.replicas[0]!;
      relay.reject();
      // A read that meets the refused replica bans it (and is answered by the other node).
      await waitFor('replica banned', async () => {
        await t.db.replica.query('SELECT 1');
        return replica.bannedUntil !== 0;
      }, 5000, 10);
      await waitFor('replica-1 emptied', () => replica.node.pool.totalCount === 0, 3000, 10);
      const attempts = relay.accepted;
      // Inside the ban (2 s, the first probe at its end): neither the pool's refill nor the node
      // monitor (250 ms ticks) opens anything.
      await sleep(1200);
      expect(replica.bannedUntil).not.toBe(0);
      expect(relay.accepted - attempts).toBe(0);
      await relay.restore();
      await waitFor('replica restored', () => t.events.some((e) => e.type === 'replica-restored'), 8000, 10);
      await waitFor('replica-1 refilled to min', () => replica.node.pool.totalCount === 2, 3000, 10);
      const res = await t.db.replica.query<{ port: number }>('SELECT inet_server_port() AS port');
      expect(res.rows[0]!.port).toBe(clusterConfig.replica1.port);
    } finally {
      await t.close();
      await relay.close();
    }
  }, 25_000);
});
