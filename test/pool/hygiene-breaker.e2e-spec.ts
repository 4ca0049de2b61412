import { PoolUnavailableError, type PoolModuleRootOptions } from 'nestjs-pg-pools';
import { startApp, startAppBehindRelay } from '../support/app.js';
import { clusterConfig, nodeOptions } from '../support/cluster.js';
import { expectNoSessionsLeft } from '../support/sessions.js';
import { TcpRelay } from '../support/tcp-relay.js';
import { sleep, waitFor } from '../support/wait.js';
import { TIME_MARGIN_MS } from '../support/margin.js';

// The per-node circuit breaker, with "the network" of one node taken away by a relay (no shared
// server is stopped): after breaker.failureThreshold consecutive connection failures calls fail
// fast with PoolUnavailableError (node, address, retry time); after resetTimeoutMs exactly one
// trial goes through; a background reconnect closes it as soon as the server answers; reads skip
// a replica whose breaker is open.

const APP = 'e2e-hygiene-breaker';

/** The suite's pool options: the test preset, this file's application name, and `extra`. */
const options = (extra: Partial<PoolModuleRootOptions>): PoolModuleRootOptions => ({ preset: 'test', applicationName: APP, ...extra });

describe('circuit breaker per node (real servers behind a relay)', () => {
  afterAll(() => expectNoSessionsLeft(APP));

  it('opens after failureThreshold connection failures, fails fast, lets one trial through when half-open', async () => {
    const { t, relay } = await startAppBehindRelay(options({
      // No background refill (min 0): every failure counted here is a caller's.
      min: 0,
      max: 4,
      breaker: { failureThreshold: 3, resetTimeoutMs: 1000 },
    }));
    try {
      relay.reject();
      await waitFor('pool emptied', () => t.db.primary.pool.totalCount === 0, 3000);
      for (let i = 0; i < 3; i++) {
        const err = await t.db.query('SELECT 1').then(() => undefined, (e: unknown) => e);
        // A connection error from the driver (created in Node's realm, so no instanceof Error here).
        expect((err as Error | undefined)?.message).toMatch(/Connection terminated|ECONNRESET|not queryable/);
        expect(err).not.toBeInstanceOf(PoolUnavailableError);
      }
      const started = Date.now();
      const attemptsBeforeFast = relay.accepted;
      const fast = await t.db.query('SELECT 1').then(() => undefined, (e: unknown) => e);
      // Fast: no connection attempt, and no wait (connect or acquire timeout); + TIME_MARGIN_MS on 2 shared cores.
      expect(relay.accepted).toBe(attemptsBeforeFast);
      expect(Date.now() - started).toBeLessThanOrEqual(TIME_MARGIN_MS);
      expect(fast).toBeInstanceOf(PoolUnavailableError);
      const unavailable = fast as PoolUnavailableError;
      expect(unavailable).toMatchObject({ name: 'PoolUnavailableError', code: 'POOL_UNAVAILABLE', database: 'default', node: 'primary', address: `${clusterConfig.host}:${relay.port}` });
      expect(unavailable.retryAt.getTime()).toBeGreaterThan(Date.now() + 500);
      expect(unavailable.retryAt.getTime()).toBeLessThanOrEqual(Date.now() + 1000);
      expect(unavailable.message).toMatch(/^Cannot use "default\/primary" \(127\.0\.0\.1:\d+\) because its circuit breaker is open after 3 consecutive connection failures \(last: .+\)\. It will be tried again at \d{4}-\d\d-\d\dT/);
      expect(t.events.filter((e) => e.type === 'breaker-open')).toHaveLength(1);
      expect(t.logger.warnings('Circuit breaker of "default/primary"')).toHaveLength(1);
      expect(t.cluster.primary.status()).toMatchObject({ breaker: 'open' });

      await waitFor('half-open', () => t.cluster.primary.status().breaker === 'half-open', 2000, 10);
      const attemptsBefore = relay.accepted;
      const burst = await Promise.allSettled([1, 2, 3, 4, 5].map(() => t.db.query('SELECT 1')));
      const reasons = burst.map((r) => (r as PromiseRejectedResult).reason);
      expect(burst.every((r) => r.status === 'rejected')).toBe(true);
      expect(reasons.filter((e) => e instanceof PoolUnavailableError)).toHaveLength(4);
      expect(reasons.filter((e) => !(e instanceof PoolUnavailableError))).toHaveLength(1);
      expect(relay.accepted - attemptsBefore).toBeLessThanOrEqual(2);
      expect(t.cluster.primary.status().breaker).toBe('open');
    } finally {
      await t.close();
    }
  }, 20_000);

  it('refill failures open it without any caller; while open the refill only makes the trial, which closes it once the server is back', async () => {
    const { t, relay } = await startAppBehindRelay(options({ min: 2, max: 4, breaker: { failureThreshold: 3, resetTimeoutMs: 1000 } }));
    try {
      relay.reject();
      // Each failed refill round (2 connects here) counts once: 3 rounds open it, no caller involved.
      await waitFor('breaker opened by the refill', () => t.cluster.primary.status().breaker === 'open', 5000, 10);
      expect(t.events.filter((e) => e.type === 'breaker-open')).toMatchObject([{ failures: 3 }]);
      const openedAt = Date.now();
      const attempts = relay.accepted;
      await sleep(2300);
      // One trial per resetTimeoutMs (at about 1 s and 2 s), never the refill's backoff loop, and
      // nothing from the node monitor (it waits for the breaker too).
      expect(relay.accepted - attempts).toBeGreaterThanOrEqual(1);
      expect(relay.accepted - attempts).toBeLessThanOrEqual(Math.ceil((Date.now() - openedAt) / 1000) + 1);
      expect(t.cluster.primary.status().breaker).not.toBe('closed');
      await relay.restore();
      const restoredAt = Date.now();
      await waitFor('breaker closed', () => t.cluster.primary.status().breaker === 'closed', 3000, 10);
      expect(Date.now() - restoredAt).toBeLessThanOrEqual(1000 + 1000);
      await waitFor('refilled to min', () => t.db.primary.pool.totalCount === 2, 3000, 10);
      expect((await t.db.query('SELECT 1 AS ok')).rows[0].ok).toBe(1);
      expect(t.events.filter((e) => e.type === 'breaker-closed')).toHaveLength(1);
    } finally {
      await t.close();
    }
  }, 20_000);

  it('sends reads elsewhere while a replica breaker is open', async () => {
    const relay = await new TcpRelay(clusterConfig.host, clusterConfig.replica1.port).start();
    const t = await startApp(options({
      primary: nodeOptions('primary'),
      replicas: [{ ...nodeOptions('replica1'), port: relay.port }, nodeOptions('replica2')],
      min: 1,
      max: 3,
      breaker: { failureThreshold: 1, resetTimeoutMs: 60_000 },
      routing: { replicaBanMs: 60_000 },
    }));
    try {
      relay.reject();
      await waitFor('replica-1 emptied', () => t.db.replica.pools[0]!.totalCount === 0, 3000);
      const ports = new Set<number>();
      for (let i = 0; i < 12; i++) {
        const res = await t.db.replica.query<{ port: number; standby: boolean }>('SELECT inet_server_port() AS port, pg_is_in_recovery() AS standby');
        expect(res.rows[0]!.standby).toBe(true);
        ports.add(res.rows[0]!.port);
      }
      expect([...ports]).toEqual([clusterConfig.replica2.port]);
      const replica1 = t.cluster.replicas[0]!.node;
      expect(replica1.status().breaker).toBe('open');
      expect(replica1.available).toBe(false);
      await sleep(50);
    } finally {
      await t.close();
      await relay.close();
    }
  }, 20_000);
});
