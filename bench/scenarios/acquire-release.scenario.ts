import pg from 'pg';
import { benchCluster, rawPoolConfig } from '../bench.config.js';
import { closedLoop, interleave, median } from '../bench.harness.js';
import { createOursApp, librarySessionOptions } from '../bench.module.js';
import { atMost, figure } from '../bench.results.js';
import type { Scenario } from '../bench.scenario.js';

export const acquireReleaseScenario: Scenario = {
  id: '2',
  title: 'Acquire/release: withClient (no query) vs pool.connect()/release()',
  async run({ timing, log }) {
    const ours = await createOursApp({ applicationName: 'bench-ours-acquire' });
    const raw = new pg.Pool(rawPoolConfig(benchCluster.ports.primary, 'bench-raw-acquire', librarySessionOptions('primary')));
    try {
      const noop = () => undefined;
      const oursCycle = () => ours.db.withClient(noop);
      const rawCycle = async () => {
        const client = await raw.connect();
        client.release();
      };
      const runs = await interleave(
        timing.reps,
        () => closedLoop(oursCycle, 1, timing.acquireSliceMs),
        () => closedLoop(rawCycle, 1, timing.acquireSliceMs),
      );
      const oursRates = runs.ours.map((r) => r.rate);
      const rawRates = runs.raw.map((r) => r.rate);
      const added = oursRates.map((o, i) => 1e6 / o - 1e6 / rawRates[i]!);
      log(`  ours ${median(oursRates).toFixed(0)}/s raw ${median(rawRates).toFixed(0)}/s added ${median(added).toFixed(2)} µs`);
      return {
        method:
          'One caller takes a client and gives it back with no statement, back to back: `db.withClient(() => undefined)` vs ' +
          '`const c = await pool.connect(); c.release()` on the primary (both pools warm; the raw pool has the library session settings). Added µs = 1e6/ours − 1e6/raw per pair, median.',
        figures: [
          figure({
            id: '2.added-us',
            label: 'Added time per acquire+release cycle, 1 caller',
            ours: median(oursRates),
            raw: median(rawRates),
            reference: 'raw pool.connect()/release()',
            unit: 'cycles/s',
            value: median(added),
            valueUnit: 'µs',
            target: atMost(2, '≤ 2 µs'),
            samples: added,
            note: `Node CPU per cycle ${median(runs.ours.map((r) => r.cpuUs)).toFixed(2)} µs vs ${median(runs.raw.map((r) => r.cpuUs)).toFixed(2)} µs`,
          }),
        ],
      };
    } finally {
      await ours.app.close();
      await raw.end();
    }
  },
};
