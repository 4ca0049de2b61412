import { Controller, Get, Module, type INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { DatabaseService, PoolModule, ReadOnly } from 'nestjs-pg-pools';
import { clusterCtl, nodeOptions, pgNodeAt, replicaOptions, type PgNodeName } from '../support/cluster.js';
import { sessionCounts } from '../support/sessions.js';
import { sleep, waitFor } from '../support/wait.js';
import { freezeNode } from '../chaos/freeze.js';

// Chaos row (f) through the HTTP path users take: 20 clients read through a @ReadOnly() handler
// (each request opens its scope; reads open new replica connections as the load needs them)
// while replica1 is frozen with SIGSTOP (SIGCONT in a finally). Callers waiting on replica1 —
// on a statement, in the queue, or in the startup handshake of a new connection — are rerouted
// when the node monitor declares it hung: no read fails, and the slowest read takes ≤ 2 s.

const APP = 'e2e-failure-frozen-http';
const READERS = 20;
const FREEZE_MS = 5000;

@Controller('frozen')
class ReadController {
  constructor(private readonly db: DatabaseService) {}

  @Get('read')
  @ReadOnly()
  async read(): Promise<{ port: number }> {
    const res = await this.db.query<{ port: number }>('SELECT inet_server_port() AS port');
    return res.rows[0]!;
  }
}

@Module({
  imports: [
    PoolModule.forRoot({
      preset: 'test',
      applicationName: APP,
      sizingAdvisor: false,
      metrics: { enabled: false },
      alerts: { enabled: false },
      primary: nodeOptions('primary', { min: 1, max: 10 }),
      // Short idle time and lifetime: connections keep closing and opening under the load.
      replicas: replicaOptions({ min: 1, max: 8, idleTimeoutMs: 1000, maxLifetimeMs: 1500 }),
      routing: { replicaBanMs: 2000 },
    }),
  ],
  controllers: [ReadController],
})
class FrozenReplicaModule {}

interface Read {
  at: number;
  ms: number;
  ok: boolean;
  node?: PgNodeName;
}

describe('(5) a frozen replica under @ReadOnly() HTTP reads (SIGSTOP, real cluster)', () => {
  let app: INestApplication;

  afterAll(async () => {
    await clusterCtl('start');
    await waitFor('no session left', async () => Object.values(await sessionCounts(APP)).every((n) => n === 0), 10_000);
  }, 60_000);

  it('no failed read, slowest read ≤ 2 s, replica1 back after SIGCONT', async () => {
    app = await NestFactory.create(FrozenReplicaModule, { logger: false });
    await app.listen(0, '127.0.0.1');
    const url = `http://127.0.0.1:${(app.getHttpServer().address() as { port: number }).port}/frozen/read`;
    const events: Array<{ at: number; what: string }> = [];
    const subscription = app.get(DatabaseService).events$.subscribe((e) => {
      if (e.type === 'replica-banned' || e.type === 'replica-restored' || (e.type === 'error' && e.kind === 'connection')) events.push({ at: e.at, what: `${e.type} ${e.node}` });
    });
    const reads: Read[] = [];
    let running = true;
    const reader = async () => {
      while (running) {
        const t0 = Date.now();
        try {
          const res = await fetch(url, { signal: AbortSignal.timeout(15_000) });
          const body = (await res.json()) as { port?: number };
          reads.push({ at: t0, ms: Date.now() - t0, ok: res.status === 200, node: res.status === 200 ? pgNodeAt(body.port!) : undefined });
        } catch {
          reads.push({ at: t0, ms: Date.now() - t0, ok: false });
        }
      }
    };
    const loops = Array.from({ length: READERS }, reader);
    let thaw: (() => void) | undefined;
    let frozenAt = 0;
    let thawedAt = 0;
    try {
      await sleep(1500);
      frozenAt = Date.now();
      thaw = freezeNode('replica1');
      await sleep(FREEZE_MS);
    } finally {
      thaw?.();
      thawedAt = Date.now();
    }
    const during = () => reads.filter((r) => r.at + r.ms >= frozenAt && r.at <= thawedAt);
    let back = false;
    try {
      await waitFor('replica1 serves reads again', () => reads.some((r) => r.at > thawedAt && r.node === 'replica1'), 20_000);
      back = true;
    } finally {
      running = false;
      await Promise.all(loops);
      subscription.unsubscribe();
      await app.close();
      const d = during();
      const slow = [...d].sort((a, b) => b.ms - a.ms).slice(0, 5).map((r) => `${r.ms} ms at +${r.at - frozenAt} ms`);
      process.stdout.write(`\n(5) frozen replica1 under ${READERS} @ReadOnly() HTTP readers: ${d.length} reads during the freeze, ${reads.filter((r) => !r.ok).length} failed, slowest: ${slow.join(', ')}; back after SIGCONT: ${back}; events: ${events.map((e) => `${e.what} at +${e.at - frozenAt} ms`).join(', ')}\n`);
    }
    const slowest = Math.max(...during().map((r) => r.ms));
    const failed = reads.filter((r) => !r.ok).length;
    expect(failed).toBe(0);
    expect(slowest).toBeLessThanOrEqual(2000);
  }, 90_000);
});
