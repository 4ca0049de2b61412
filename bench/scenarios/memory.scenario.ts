import { BenchChild } from '../bench.child.js';
import { interleave } from '../bench.harness.js';
import { atMost, figure } from '../bench.results.js';
import type { Scenario } from '../bench.scenario.js';

interface MemorySample {
  ops: number;
  elapsedMs: number;
  heapUsed: number;
  rss: number;
}

const MB = 1024 * 1024;

function growthPerQuery(samples: MemorySample[]): number {
  if (samples.length < 2) return 0;
  const queries = samples.slice(1).reduce((n, s) => n + s.ops, 0);
  return (samples.at(-1)!.heapUsed - samples[0]!.heapUsed) / Math.max(1, queries);
}

export const memoryScenario: Scenario = {
  id: '7',
  title: 'Memory: heap/RSS after many queries, ours vs raw',
  async run({ timing, log }) {
    const started: BenchChild[] = [];
    try {
      const execArgv = ['--expose-gc'];
      const ours = await BenchChild.start('memory worker (ours)', 'load.worker.js', ['ours', 'query'], 60_000, { execArgv });
      started.push(ours.child);
      const raw = await BenchChild.start('memory worker (raw)', 'load.worker.js', ['raw', 'query'], 60_000, { execArgv });
      started.push(raw.child);
      const chunk = (child: BenchChild) => async (): Promise<MemorySample> => {
        const reply = await child.request({ cmd: 'chunk', count: timing.memoryChunk, capMs: timing.memoryChunkCapMs }, timing.memoryChunkCapMs + 30_000);
        return { ops: Number(reply.ops), elapsedMs: Number(reply.elapsedMs), heapUsed: Number(reply.heapUsed), rss: Number(reply.rss) };
      };
      const runs = await interleave(timing.memoryReps, chunk(ours.child), chunk(raw.child), false);
      const total = (side: MemorySample[]) => side.reduce((n, s) => n + s.ops, 0);
      const oursTotal = total(runs.ours);
      const rawTotal = total(runs.raw);
      const planned = timing.memoryChunk * timing.memoryReps;
      const last = (side: MemorySample[]) => side.at(-1)!;
      const oursGrowth = growthPerQuery(runs.ours);
      const rawGrowth = growthPerQuery(runs.raw);
      log(`  ours ${oursTotal} queries heap ${(last(runs.ours).heapUsed / MB).toFixed(1)} MB rss ${(last(runs.ours).rss / MB).toFixed(1)} MB growth ${oursGrowth.toFixed(3)} B/query`);
      log(`  raw  ${rawTotal} queries heap ${(last(runs.raw).heapUsed / MB).toFixed(1)} MB rss ${(last(runs.raw).rss / MB).toFixed(1)} MB growth ${rawGrowth.toFixed(3)} B/query`);
      const scaled = oursTotal < planned || rawTotal < planned ? ` (scaled down: planned ${planned} per side, the per-chunk time cap of ${timing.memoryChunkCapMs} ms stopped earlier)` : '';
      return {
        method:
          `Two worker processes (--expose-gc), one with PoolModule (defaults, max 10) and one with a raw pg.Pool({ max: 10 }) (same session settings), ` +
          `run SELECT 1 with 64 callers in chunks of ${timing.memoryChunk} queries, alternating ours, raw, … ${timing.memoryReps} times each; ` +
          `after every chunk: gc() twice, then heapUsed and RSS. Growth = (heap after last chunk − heap after first chunk) / queries in between.${scaled}`,
        figures: [
          figure({
            id: '7.heap',
            label: `Heap used after ${oursTotal.toLocaleString('en-US')} (ours) / ${rawTotal.toLocaleString('en-US')} (raw) queries`,
            ours: last(runs.ours).heapUsed / MB,
            raw: last(runs.raw).heapUsed / MB,
            reference: 'raw pg.Pool',
            unit: 'MB',
            value: last(runs.ours).heapUsed / last(runs.raw).heapUsed,
            valueUnit: '×',
            note: 'ours includes Nest, rxjs and the library; raw is a bare pg.Pool process',
          }),
          figure({
            id: '7.rss',
            label: 'RSS after the same queries',
            ours: last(runs.ours).rss / MB,
            raw: last(runs.raw).rss / MB,
            reference: 'raw pg.Pool',
            unit: 'MB',
            value: last(runs.ours).rss / last(runs.raw).rss,
            valueUnit: '×',
          }),
          figure({
            id: '7.growth',
            label: 'Heap growth over repetitions (first → last chunk)',
            ours: oursGrowth,
            raw: rawGrowth,
            reference: 'raw pg.Pool',
            unit: 'bytes/query',
            value: oursGrowth,
            valueUnit: 'bytes/query',
            target: atMost(1, '≤ 1 byte/query (no per-query growth)'),
            samples: runs.ours.map((s) => s.heapUsed),
          }),
        ],
        details: { ours: runs.ours, raw: runs.raw, planned },
      };
    } finally {
      await Promise.all(started.map((c) => c.stop()));
    }
  },
};
