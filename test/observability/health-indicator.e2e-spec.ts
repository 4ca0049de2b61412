import { Controller, Get, Param, Query, type INestApplication } from '@nestjs/common';
import { HealthCheck, HealthCheckService, TerminusModule } from '@nestjs/terminus';
import type { Pool, PoolClient } from 'pg';
import request from 'supertest';
import { getPoolToken, PoolHealthIndicator, type DatabaseHealth, type NodeHealth } from 'nestjs-pg-pools';
import { clusterConfig, clusterCtl, connectionString, type PgNodeName } from '../support/cluster.js';
import { CapturingLogger } from '../support/logger.js';
import { sessionCount, waitForNoSessions } from '../support/sessions.js';
import { waitFor } from '../support/wait.js';
import { buildApp, type TestApp } from '../support/app.js';

// PoolHealthIndicator through Terminus on the real primary + 2 replicas: every node's entry when
// all is up, a stopped replica (200, degraded), a stopped primary (503), requireReplicas, a ping
// that times out on a saturated pool, bad options, and never a password in any output.
// Stops nodes: every test restores what it stopped, afterAll runs `cluster.sh start` as a guard.

const APP = 'e2e-health-indicator';
const PASSWORD = clusterConfig.password;
const MAX = 4;

const logger = new CapturingLogger();
/** Terminus builds its logger from a class: this one keeps its lines in `logger` too. */
class TerminusLogger extends CapturingLogger {
  override readonly entries = logger.entries;
}

function numberOrUndefined(value: string | undefined): number | undefined {
  return value === undefined ? undefined : Number(value);
}

@Controller('health')
class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly pools: PoolHealthIndicator,
  ) {}

  @Get()
  @HealthCheck()
  check(@Query('timeoutMs') timeoutMs?: string, @Query('requireReplicas') requireReplicas?: string) {
    const require = requireReplicas === undefined ? undefined : requireReplicas === 'true' ? true : Number(requireReplicas);
    return this.health.check([() => this.pools.check('database', { timeoutMs: numberOrUndefined(timeoutMs), requireReplicas: require })]);
  }

  @Get('ping/:node')
  @HealthCheck()
  ping(@Param('node') node: string, @Query('timeoutMs') timeoutMs?: string, @Query('database') database?: string) {
    return this.health.check([() => this.pools.pingCheck(`ping-${node}`, { node, database, timeoutMs: numberOrUndefined(timeoutMs) })]);
  }
}

interface HealthBody {
  status: 'ok' | 'error';
  info: Record<string, unknown>;
  error: Record<string, unknown>;
  details: Record<string, DatabaseHealth & { status: string } & Record<string, any>>;
}

const port = (node: PgNodeName) => clusterConfig.ports[node];
const address = (node: PgNodeName) => `${clusterConfig.host}:${port(node)}`;

describe('PoolHealthIndicator (real cluster)', () => {
  let t: TestApp;
  let app: INestApplication;
  let primaryPool: Pool;
  let replicaPools: Pool[];
  const bodies: string[] = [];

  async function get(path: string, expected: number): Promise<HealthBody> {
    const res = await request(app.getHttpServer()).get(path);
    bodies.push(res.text);
    expect(res.text).not.toContain(PASSWORD);
    if (res.status !== expected) throw new Error(`GET ${path}: expected ${expected}, got ${res.status}: ${res.text}`);
    return res.body as HealthBody;
  }

  function expectNodeUp(entry: NodeHealth, role: 'primary' | 'replica', node: PgNodeName): void {
    expect(entry).toMatchObject({ status: 'up', role, address: address(node), breaker: 'closed' });
    expect(entry.message).toBeUndefined();
    expect(entry.latencyMs).toBeGreaterThanOrEqual(0);
    expect(entry.latencyMs).toBeLessThan(1000);
    expect(entry.pool).toEqual({
      total: expect.any(Number),
      idle: expect.any(Number),
      inUse: expect.any(Number),
      waiting: expect.any(Number),
      min: expect.any(Number),
      max: MAX,
    });
    expect(entry.pool.total).toBe(entry.pool.idle + entry.pool.inUse);
    if (role === 'replica') {
      expect(entry).toMatchObject({ banned: false, inRotation: true });
      expect(typeof entry.replicationLagMs).toBe('number');
    } else {
      expect(entry).not.toHaveProperty('replicationLagMs');
      expect(entry).not.toHaveProperty('banned');
    }
  }

  beforeAll(async () => {
    t = await buildApp(
      {
        preset: 'test',
        applicationName: APP,
        primary: { connectionString: connectionString('primary') },
        replicas: [{ connectionString: connectionString('replica1') }, { connectionString: connectionString('replica2') }],
        min: 1,
        max: MAX,
        acquireTimeoutMs: 3000,
        retryAttempts: 1,
        sizingAdvisor: false,
        routing: { lagCheckIntervalMs: 200, replicaBanMs: 500 },
        metrics: { enabled: false },
        alerts: { enabled: false },
      },
      { imports: [TerminusModule.forRoot({ logger: TerminusLogger })], controllers: [HealthController], logger },
    );
    app = t.app;
    primaryPool = app.get<Pool>(getPoolToken());
    replicaPools = app.get<Pool[]>(getPoolToken(undefined, 'replicas'));
  }, 30_000);

  afterAll(async () => {
    await t?.close();
    await clusterCtl('start');
    await waitForNoSessions(APP, { timeoutMs: 10_000, everyMs: 100 });
    for (const text of [...bodies, logger.text]) expect(text).not.toContain(PASSWORD);
  }, 90_000);

  it('reports every node up with latency, pool counts, lag and breaker state (200)', async () => {
    const body = await get('/health', 200);
    expect(body.status).toBe('ok');
    const db = body.details.database!;
    expect(body.info.database).toEqual(db);
    expect(db).toMatchObject({ status: 'up', database: 'default', degraded: false, replicas: { total: 2, healthy: 2, required: 0 } });
    expect(db.message).toBeUndefined();
    expect(Object.keys(db.nodes)).toEqual(['primary', 'replica-1', 'replica-2']);
    expectNodeUp(db.nodes.primary!, 'primary', 'primary');
    expectNodeUp(db.nodes['replica-1']!, 'replica', 'replica1');
    expectNodeUp(db.nodes['replica-2']!, 'replica', 'replica2');

    // The counts are the pools' own, and the server sees exactly those connections.
    expect(db.nodes.primary!.pool.total).toBe(primaryPool.totalCount);
    expect(db.nodes['replica-2']!.pool.total).toBe(replicaPools[1]!.totalCount);
    expect(await sessionCount('primary', APP, { poolOnly: true })).toBe(primaryPool.totalCount);
    expect(await sessionCount('replica1', APP, { poolOnly: true })).toBe(replicaPools[0]!.totalCount);
  });

  it('pings one node with pingCheck, and reports bad options and unknown nodes as down with the reason', async () => {
    const replica = await get('/health/ping/replica-2', 200);
    expect(replica.details['ping-replica-2']).toMatchObject({ status: 'up', database: 'default', node: 'replica-2', role: 'replica', address: address('replica2') });
    const primary = await get('/health/ping/primary', 200);
    expect(primary.details['ping-primary']).toMatchObject({ status: 'up', node: 'primary', role: 'primary', address: address('primary') });

    const unknown = await get('/health/ping/replica-9', 503);
    expect(unknown.error['ping-replica-9']).toEqual({
      status: 'down',
      database: 'default',
      message: 'Cannot ping node "replica-9" of database "default" because it has no such node (nodes: primary, replica-1, replica-2). Please make sure that the `node` option is "primary" or one of those names.',
    });
    const badTimeout = await get('/health/ping/primary?timeoutMs=0', 503);
    expect(badTimeout.error['ping-primary']).toMatchObject({
      status: 'down',
      message: 'Invalid PoolHealthIndicator.pingCheck() option `timeoutMs`: expected an integer number of milliseconds from 1 and up, got 0 (number).',
    });
    const noDatabase = await get('/health/ping/primary?database=analytics', 503);
    expect(noDatabase.error['ping-primary']).toMatchObject({ status: 'down', database: 'analytics', message: expect.stringContaining('Cannot check database "analytics" because no PoolModule registers it.') });
    const badRequire = await get('/health?requireReplicas=-1', 503);
    expect(badRequire.error.database).toMatchObject({ message: expect.stringContaining('option `requireReplicas`: expected true, false or an integer from 0 and up, got -1 (number)') });
  });

  it('turns a ping that does not finish in time into down with "timeout of Nms exceeded"', async () => {
    const held: PoolClient[] = [];
    try {
      for (let i = 0; i < MAX; i++) held.push(await replicaPools[1]!.connect());
      const started = Date.now();
      const ping = await get('/health/ping/replica-2?timeoutMs=300', 503);
      expect(Date.now() - started).toBeLessThan(2500);
      const entry = ping.error['ping-replica-2'] as NodeHealth;
      expect(entry).toMatchObject({ status: 'down', message: `Replica "replica-2" (${address('replica2')}) is down: timeout of 300ms exceeded` });
      expect(entry.latencyMs).toBeGreaterThanOrEqual(299);
      expect(entry.pool).toMatchObject({ inUse: MAX, max: MAX });
      expect(entry.pool.waiting).toBeGreaterThanOrEqual(1);

      // The whole check stays up: a saturated replica only degrades it.
      const all = await get('/health?timeoutMs=300', 200);
      const db = all.details.database!;
      expect(db).toMatchObject({ status: 'up', degraded: true, replicas: { total: 2, healthy: 1, required: 0 } });
      expect(db.nodes['replica-2']).toMatchObject({ status: 'down', message: expect.stringContaining('timeout of 300ms exceeded') });
      expect(db.nodes['replica-1']!.status).toBe('up');
    } finally {
      for (const client of held) client.release();
    }
    await waitFor('replica-2 healthy again', async () => {
      const body = await get('/health', 200);
      return body.details.database!.degraded === false;
    }, 20_000, 100);
  });

  it('keeps the check up (200, degraded) with a stopped replica shown down, unless requireReplicas asks for it', async () => {
    await clusterCtl('node-stop', 'replica1', 'immediate');
    try {
      const body = await get('/health', 200);
      expect(body.status).toBe('ok');
      const db = body.details.database!;
      expect(db).toMatchObject({ status: 'up', degraded: true, replicas: { total: 2, healthy: 1, required: 0 } });
      expect(db.message).toBe('Degraded: replica(s) "replica-1" out of rotation; reads go to the other replicas or the primary.');
      expect(db.nodes['replica-1']).toMatchObject({ status: 'down', role: 'replica', address: address('replica1'), inRotation: false, replicationLagMs: null });
      expect(db.nodes['replica-1']!.message).toMatch(new RegExp(`^Replica "replica-1" \\(${address('replica1').replace(/\./g, '\\.')}\\) is down: `));
      expectNodeUp(db.nodes.primary!, 'primary', 'primary');
      expectNodeUp(db.nodes['replica-2']!, 'replica', 'replica2');

      // The lag monitor bans the stopped replica; the health output shows the ban.
      const banned = await waitFor('replica-1 banned', async () => {
        const entry = (await get('/health', 200)).details.database!.nodes['replica-1']!;
        return entry.banned ? entry : undefined;
      }, 20_000, 100);
      expect(banned.bannedUntil).toEqual(expect.stringMatching(/^\d{4}-\d\d-\d\dT/));
      expect(banned.banReason).toEqual(expect.any(String));

      const strict = await get('/health?requireReplicas=true', 503);
      expect(strict.status).toBe('error');
      expect(strict.error.database).toMatchObject({
        status: 'down',
        degraded: true,
        message: '1 of 2 replica(s) healthy, 2 required (requireReplicas).',
        replicas: { total: 2, healthy: 1, required: 2 },
      });
      const one = await get('/health?requireReplicas=1', 200);
      expect(one.details.database).toMatchObject({ status: 'up', degraded: true, replicas: { healthy: 1, required: 1 } });
    } finally {
      await clusterCtl('node-start', 'replica1');
    }
    const back = await waitFor('replica-1 back in rotation', async () => {
      const body = await get('/health?requireReplicas=true', 200).catch(() => undefined);
      return body?.details.database!.degraded === false ? body : undefined;
    }, 20_000, 100);
    expectNodeUp(back.details.database!.nodes['replica-1']!, 'replica', 'replica1');
  }, 60_000);

  it('reports 503 with the primary down when the primary is stopped', async () => {
    await clusterCtl('node-stop', 'primary', 'immediate');
    try {
      const body = await get('/health', 503);
      expect(body.status).toBe('error');
      const db = body.error.database as DatabaseHealth;
      expect(body.details.database).toEqual(db);
      expect(db).toMatchObject({ status: 'down', degraded: false });
      expect(db.nodes.primary).toMatchObject({ status: 'down', role: 'primary', address: address('primary') });
      expect(db.nodes.primary!.message).toMatch(new RegExp(`^Primary "primary" \\(${address('primary').replace(/\./g, '\\.')}\\) is down: `));
      expect(db.message).toBe(db.nodes.primary!.message);
      // The replicas still answer reads.
      expect(db.nodes['replica-1']!.status).toBe('up');
      expect(db.nodes['replica-2']!.status).toBe('up');

      const ping = await get('/health/ping/primary', 503);
      expect(ping.error['ping-primary']).toMatchObject({ status: 'down', node: 'primary', message: expect.stringContaining('is down: ') });
    } finally {
      await clusterCtl('node-start', 'primary');
    }
    await waitFor('primary up again', async () => {
      const res = await request(app.getHttpServer()).get('/health');
      bodies.push(res.text);
      return res.status === 200 ? res : undefined;
    }, 20_000, 100);
  }, 60_000);
});
