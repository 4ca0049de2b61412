import 'reflect-metadata';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { benchCluster, rawPoolConfig } from '../bench.config.js';
import { closedLoop, countedLoop } from '../bench.harness.js';
import { createOursApp, librarySessionOptions, type OursApp } from '../bench.module.js';

// A load process of its own, so one side's process-wide costs (AsyncLocalStorage hooks, heap)
// never touch the other side. argv: <ours|raw> <query|read>. Over IPC:
//   run   { concurrency, ms }       closed loop for ms          → { rate, ops }
//   chunk { count, capMs }          64 callers, count queries   → { ops, elapsedMs, heapUsed, rss } after gc() twice
//   pick  { calls }                 ours only: ns per ALS scope + replica choice, and per plain call

const side = process.argv[2];
const workload = process.argv[3] ?? 'query';
if ((side !== 'ours' && side !== 'raw') || (workload !== 'query' && workload !== 'read')) {
  throw new Error(`Expected <ours|raw> <query|read> as arguments, got ${JSON.stringify(process.argv.slice(2))}.`);
}
const gc = (globalThis as { gc?: () => void }).gc;

let ours: OursApp | undefined;
let raw: pg.Pool | undefined;
let op: () => Promise<unknown>;

function snapshot() {
  if (gc) {
    gc();
    gc();
  }
  const m = process.memoryUsage();
  return { heapUsed: m.heapUsed, rss: m.rss };
}

/** ns per call of `fn`, from the best of 5 batches. */
function nsPerCall(fn: () => unknown, calls: number): number {
  let best = Infinity;
  for (let batch = 0; batch < 5; batch++) {
    const start = performance.now();
    for (let i = 0; i < calls; i++) fn();
    best = Math.min(best, ((performance.now() - start) * 1e6) / calls);
  }
  return best;
}

async function handle(m: { cmd: string; concurrency?: number; ms?: number; count?: number; capMs?: number; calls?: number }): Promise<Record<string, unknown>> {
  switch (m.cmd) {
    case 'run': {
      const loop = await closedLoop(op, m.concurrency!, m.ms!);
      return { rate: loop.rate, ops: loop.ops, cpuUs: loop.cpuUs };
    }
    case 'chunk': {
      const loop = await countedLoop(op, 64, m.count!, m.capMs!);
      return { ops: loop.ops, elapsedMs: loop.elapsedMs, ...snapshot() };
    }
    case 'pick': {
      if (!ours) throw new Error('Cannot time replica selection because this worker has no PoolModule.');
      const cluster = ours.cluster;
      const plain = { pickOnly: (_: unknown) => undefined };
      return {
        plainNs: nsPerCall(() => plain.pickOnly(cluster), m.calls!),
        scopedNs: nsPerCall(() => ours!.reads.pickOnly(cluster), m.calls!),
        readsServedPerReplica: Object.fromEntries(cluster.replicas.map((r) => [r.node.name, r.node.counters.routedReads])),
        primaryFallbacks: cluster.primary.counters.fallbacks,
      };
    }
    default:
      throw new Error(`Unknown command ${JSON.stringify(m.cmd)}.`);
  }
}

async function stop(code: number): Promise<void> {
  await ours?.app.close();
  await raw?.end();
  process.exit(code);
}

process.on('message', (message) => {
  const m = message as { cmd: string };
  if (m.cmd === 'stop') return void stop(0);
  handle(m).then(
    (reply) => process.send!({ cmd: m.cmd, ...reply }),
    (err: unknown) => process.send!({ cmd: 'failed', message: err instanceof Error ? err.message : String(err) }),
  );
});
process.on('disconnect', () => void stop(0));

try {
  if (side === 'ours') {
    const app = await createOursApp({ applicationName: `bench-ours-${workload}` });
    ours = app;
    op = workload === 'read' ? () => app.reads.selectOne() : () => app.db.query('SELECT 1');
  } else {
    const port = workload === 'read' ? benchCluster.ports.replica1 : benchCluster.ports.primary;
    const pool = new pg.Pool(rawPoolConfig(port, `bench-raw-${workload}`, librarySessionOptions(workload === 'read' ? 'replica' : 'primary')));
    raw = pool;
    op = () => pool.query('SELECT 1');
  }
  process.send!({ cmd: 'ready', ...snapshot() });
} catch (err) {
  process.send!({ cmd: 'failed', message: err instanceof Error ? err.message : String(err) });
  await stop(1);
}
