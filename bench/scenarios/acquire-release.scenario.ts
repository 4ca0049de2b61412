import pg from 'pg';
import { benchCluster, rawPoolConfig } from '../bench.config.js';
import { closedLoop, interleaveSides, median } from '../bench.harness.js';
import { createOursApp, librarySessionOptions } from '../bench.module.js';
import { atMost, figure } from '../bench.results.js';
import type { Scenario } from '../bench.scenario.js';

export const acquireReleaseScenario: Scenario = {
  id: '2',
  title: 'Acquire/release: withClient (no query) vs pool.connect()/release()',
  async run({ timing, log }) {
    const ours = await createOursApp({ applicationName: 'bench-ours-acquire' });
    // The same app with leak detection on: every client lent to the caller records where it was taken.
    const watched = await createOursApp({ applicationName: 'bench-ours-acquire-leak', leakDetectionThresholdMs: 2000 });
    const raw = new pg.Pool(rawPoolConfig(benchCluster.ports.primary, 'bench-raw-acquire', librarySessionOptions('primary')));
    try {
      const noop = () => undefined;
      const oursCycle = () => ours.db.withClient(noop);
      const watchedCycle = () => watched.db.withClient(noop);
      const rawCycle = async () => {
        const client = await raw.connect();
        client.release();
      };
      const [oursRuns, rawRuns, watchedRuns] = await interleaveSides(timing.reps, [
        () => closedLoop(oursCycle, 1, timing.acquireSliceMs),
        () => closedLoop(rawCycle, 1, timing.acquireSliceMs),
        () => closedLoop(watchedCycle, 1, timing.acquireSliceMs),
      ]);
      const oursRates = oursRuns!.map((r) => r.rate);
      const rawRates = rawRuns!.map((r) => r.rate);
      const watchedRates = watchedRuns!.map((r) => r.rate);
      const added = oursRates.map((o, i) => 1e6 / o - 1e6 / rawRates[i]!);
      const addedWatched = watchedRates.map((o, i) => 1e6 / o - 1e6 / rawRates[i]!);
      const cpu = (runs: readonly { cpuUs: number }[]) => median(runs.map((r) => r.cpuUs)).toFixed(2);
      log(`  ours ${median(oursRates).toFixed(0)}/s raw ${median(rawRates).toFixed(0)}/s added ${median(added).toFixed(2)} µs; leak detection on: added ${median(addedWatched).toFixed(2)} µs`);
      return {
        method:
          'One caller takes a client and gives it back with no statement, back to back: `db.withClient(() => undefined)` vs ' +
          '`const c = await pool.connect(); c.release()` on the primary (both pools warm; the raw pool has the library session settings). Added µs = 1e6/ours − 1e6/raw per pair, median. ' +
          'A third side, interleaved with the other two, is the same app with `leakDetectionThresholdMs: 2000`: each client lent to the caller records the stack that took it.',
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
            note: `Node CPU per cycle ${cpu(oursRuns!)} µs vs ${cpu(rawRuns!)} µs`,
          }),
          figure({
            id: '2.added-us.leak-on',
            label: 'Added time per acquire+release cycle, 1 caller, leak detection on (2000 ms)',
            ours: median(watchedRates),
            raw: median(rawRates),
            reference: 'raw pool.connect()/release()',
            unit: 'cycles/s',
            value: median(addedWatched),
            valueUnit: 'µs',
            samples: addedWatched,
            note:
              `Node CPU per cycle ${cpu(watchedRuns!)} µs vs ${cpu(rawRuns!)} µs. The cost of leak detection where it applies: one ` +
              '`new Error()` per client lent to the caller (V8 captures the frames, async ones included; they are formatted only for a leak report)',
          }),
        ],
      };
    } finally {
      await ours.app.close();
      await watched.app.close();
      await raw.end();
    }
  },
};
