import type { INestApplication } from '@nestjs/common';
import type { Subscription } from 'rxjs';
import request from 'supertest';
import { DatabaseService, type PoolEvent } from 'nestjs-pg-pools';
import { clusterConfig, nodeOptions } from '../support/cluster.js';
import { parsePrometheusText, sampleValue } from '../support/observability.js';
import { waitForNoSessions } from '../support/sessions.js';
import { TcpRelay } from '../support/tcp-relay.js';
import { waitFor } from '../support/wait.js';
import { buildApp, type TestApp } from '../support/app.js';

// A replica that goes away and comes back, without stopping any server: replica "flaky" is
// reached through a loopback TCP relay in front of replica1; cutting the relay closes its port
// and drops its connections. Events: error, breaker-open, replica-banned, replica-restored,
// breaker-closed; metrics show the ban; reads keep landing on the other replica.

const APP = 'e2e-events-replica-ban';

describe('replica ban events (real replicas behind a relay)', () => {
  let t: TestApp;
  let app: INestApplication;
  let db: DatabaseService;
  let subscription: Subscription;
  let relay: TcpRelay;
  const events: PoolEvent[] = [];

  beforeAll(async () => {
    relay = await TcpRelay.to('replica1');
    t = await buildApp(
      {
        preset: 'test',
        applicationName: APP,
        primary: nodeOptions('primary'),
        replicas: [nodeOptions('replica1', { port: relay.port, name: 'flaky' }), nodeOptions('replica2', { name: 'steady' })],
        min: 1,
        max: 3,
        sizingAdvisor: false,
        retryAttempts: 1,
        acquireTimeoutMs: 2000,
        breaker: { failureThreshold: 1, resetTimeoutMs: 300 },
        routing: { replicaBanMs: 800, lagCheckIntervalMs: 60_000, maxReplicationLagMs: 0 },
        alerts: { log: false },
      },
    );
    app = t.app;
    db = app.get(DatabaseService);
    subscription = db.events$.subscribe((e) => events.push(e));
  }, 30_000);

  afterAll(async () => {
    subscription?.unsubscribe();
    await t?.close();
    await relay?.close();
    await waitForNoSessions(APP, { timeoutMs: 5000, everyMs: 100 });
    expect(JSON.stringify(events)).not.toContain(clusterConfig.password);
  }, 30_000);

  const ofType = <T extends PoolEvent['type']>(type: T) => events.filter((e): e is Extract<PoolEvent, { type: T }> => e.type === type);

  async function readPort(): Promise<number> {
    const res = await db.replica.query<{ port: number }>('SELECT inet_server_port() AS port');
    return res.rows[0]!.port;
  }

  it('reads both replicas while the relay is up', async () => {
    const ports = new Set<number>();
    for (let i = 0; i < 6; i++) ports.add(await readPort());
    expect([...ports].sort()).toEqual([clusterConfig.ports.replica1, clusterConfig.ports.replica2].sort());
  });

  it('bans the replica whose port closed, opens its breaker, and keeps reads on the other replica', async () => {
    await relay.cut();
    const flakyPool = db.replica.pools[0]!;
    await waitFor('the dropped connections to leave the pool', () => flakyPool.totalCount === 0, 5000);
    await waitFor('idle-client error and remove events', () => ofType('remove').some((e) => e.node === 'flaky' && e.reason === 'error'), 5000);
    const ports: number[] = [];
    await waitFor('replica-banned event', async () => {
      ports.push(await readPort());
      return ofType('replica-banned').length > 0;
    }, 10_000, 10);
    expect(ports.every((p) => p === clusterConfig.ports.replica2)).toBe(true);

    const banned = ofType('replica-banned');
    expect(banned).toHaveLength(1);
    expect(banned[0]).toMatchObject({ database: 'default', node: 'flaky', role: 'replica', reason: expect.stringContaining('ECONNREFUSED') });
    expect(banned[0]!.untilMs).toBeGreaterThan(banned[0]!.at);
    expect(ofType('breaker-open')[0]).toMatchObject({ node: 'flaky', failures: 1, retryAt: expect.any(Number) });
    expect(ofType('error').some((e) => e.node === 'flaky' && e.kind === 'connection')).toBe(true);

    for (let i = 0; i < 4; i++) expect(await readPort()).toBe(clusterConfig.ports.replica2);

    const server = request(app.getHttpServer());
    const json = (await server.get('/metrics/db-pool').expect(200)).body.databases.default.nodes;
    expect(json.flaky).toMatchObject({ banned: true, available: false, counters: { bans: 1 } });
    expect(json.flaky.banReason).toContain('ECONNREFUSED');
    expect(json.steady).toMatchObject({ banned: false, available: true });
    const prom = parsePrometheusText((await server.get('/metrics').expect(200)).text);
    expect(sampleValue(prom, 'db_replica_banned', { node: 'flaky' })).toBe(1);
    expect(sampleValue(prom, 'db_replica_banned', { node: 'steady' })).toBe(0);
    expect(sampleValue(prom, 'db_replica_bans_total', { node: 'flaky' })).toBe(1);
    expect(sampleValue(prom, 'db_pool_breaker_opens_total', { node: 'flaky' })).toBe(1);
    expect(sampleValue(prom, 'db_pool_errors_total', { node: 'flaky', kind: 'connection' })).toBeGreaterThanOrEqual(1);
  }, 20_000);

  it('restores the replica when its port is back, then closes its breaker on the next read there', async () => {
    await relay.restore();
    const restored = await waitFor('replica-restored event', () => ofType('replica-restored')[0], 10_000);
    expect(restored).toMatchObject({ database: 'default', node: 'flaky', role: 'replica' });

    const ports = new Set<number>();
    await waitFor('breaker-closed event', async () => {
      ports.add(await readPort());
      return ofType('breaker-closed').length > 0;
    }, 10_000, 20);
    expect(ofType('breaker-closed')[0]).toMatchObject({ node: 'flaky', role: 'replica' });
    for (let i = 0; i < 6; i++) ports.add(await readPort());
    expect(ports.has(clusterConfig.ports.replica1)).toBe(true);

    const json = (await request(app.getHttpServer()).get('/metrics/db-pool').expect(200)).body.databases.default.nodes;
    expect(json.flaky).toMatchObject({ banned: false, available: true, breaker: { state: 'closed' } });
  }, 30_000);
});
