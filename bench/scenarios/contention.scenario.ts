import { performance } from 'node:perf_hooks';
import pg from 'pg';
import type { PoolClient } from 'pg';
import { benchCluster, rawPoolConfig } from '../bench.config.js';
import { interleave, median, percentile } from '../bench.harness.js';
import { createOursApp, librarySessionOptions } from '../bench.module.js';
import { figure, type Figure } from '../bench.results.js';
import type { Scenario } from '../bench.scenario.js';

const CALLERS = 200;

interface ContentionRun {
  waitP50: number;
  waitP99: number;
  completedMin: number;
  completedMax: number;
  total: number;
  rate: number;
}

/**
 * `CALLERS` callers each loop: take a client (timed), `SELECT 1`, give it back, until the slice
 * ends. `acquire` runs the body with the client and reports when the client arrived.
 */
async function contend(acquire: (body: (client: PoolClient) => Promise<unknown>) => Promise<unknown>, sliceMs: number): Promise<ContentionRun> {
  const waits: number[] = [];
  const completed = new Array<number>(CALLERS).fill(0);
  const start = performance.now();
  const deadline = start + sliceMs;
  const caller = async (index: number) => {
    while (performance.now() < deadline) {
      const asked = performance.now();
      await acquire((client) => {
        waits.push(performance.now() - asked);
        return client.query('SELECT 1');
      });
      completed[index]!++;
    }
  };
  await Promise.all(Array.from({ length: CALLERS }, (_, i) => caller(i)));
  const elapsed = performance.now() - start;
  const total = completed.reduce((a, b) => a + b, 0);
  return {
    waitP50: percentile(waits, 50),
    waitP99: percentile(waits, 99),
    completedMin: Math.min(...completed),
    completedMax: Math.max(...completed),
    total,
    rate: (total * 1000) / elapsed,
  };
}

export const contentionScenario: Scenario = {
  id: '6',
  title: 'Contention: 200 concurrent callers on max 10',
  async run({ timing, log }) {
    const ours = await createOursApp({ applicationName: 'bench-ours-contention' });
    const raw = new pg.Pool(rawPoolConfig(benchCluster.ports.primary, 'bench-raw-contention', librarySessionOptions('primary')));
    try {
      const runs = await interleave(
        timing.reps,
        () => contend((body) => ours.db.withClient(body), timing.contentionSliceMs),
        () =>
          contend(async (body) => {
            const client = await raw.connect();
            try {
              await body(client);
            } finally {
              client.release();
            }
          }, timing.contentionSliceMs),
      );
      const summary = (side: ContentionRun[]) => ({
        waitP50: median(side.map((r) => r.waitP50)),
        waitP99: median(side.map((r) => r.waitP99)),
        fairness: median(side.map((r) => r.completedMax / Math.max(1, r.completedMin))),
        minCompleted: Math.min(...side.map((r) => r.completedMin)),
        rate: median(side.map((r) => r.rate)),
      });
      const o = summary(runs.ours);
      const r = summary(runs.raw);
      log(`  ours p50 ${o.waitP50.toFixed(2)}ms p99 ${o.waitP99.toFixed(2)}ms fairness ${o.fairness.toFixed(2)} min ${o.minCompleted}`);
      log(`  raw  p50 ${r.waitP50.toFixed(2)}ms p99 ${r.waitP99.toFixed(2)}ms fairness ${r.fairness.toFixed(2)} min ${r.minCompleted}`);
      const figures: Figure[] = [
        figure({ id: '6.wait-p50', label: 'Acquire wait p50', ours: o.waitP50, raw: r.waitP50, reference: 'raw pg.Pool', unit: 'ms', value: o.waitP50 / r.waitP50, valueUnit: '×' }),
        figure({ id: '6.wait-p99', label: 'Acquire wait p99', ours: o.waitP99, raw: r.waitP99, reference: 'raw pg.Pool', unit: 'ms', value: o.waitP99 / r.waitP99, valueUnit: '×' }),
        figure({
          id: '6.fairness',
          label: 'Fairness: max / min queries completed per caller (1 = perfectly even)',
          ours: o.fairness,
          raw: r.fairness,
          reference: 'raw pg.Pool',
          unit: 'max/min',
          value: o.fairness,
          valueUnit: 'max/min',
        }),
        figure({
          id: '6.starvation',
          label: 'Fewest queries any caller completed in a slice (0 = starvation)',
          ours: o.minCompleted,
          raw: r.minCompleted,
          reference: 'raw pg.Pool',
          unit: 'queries',
          value: o.minCompleted,
          valueUnit: 'queries',
          target: { op: '>=', value: 1, text: '≥ 1 (no starvation)' },
        }),
        figure({ id: '6.throughput', label: 'Throughput under contention', ours: o.rate, raw: r.rate, reference: 'raw pg.Pool', unit: 'queries/s', value: o.rate / r.rate, valueUnit: '×' }),
      ];
      return {
        method:
          `${CALLERS} callers loop: take a client, SELECT 1, give it back (ours: db.withClient; raw: pool.connect()/release()), ` +
          'on max 10, raw pool with the library session settings. Acquire wait is timed from the request to the client arriving. Interleaved slices; medians over repetitions.',
        figures,
        details: { ours: runs.ours, raw: runs.raw },
      };
    } finally {
      await ours.app.close();
      await raw.end();
    }
  },
};
