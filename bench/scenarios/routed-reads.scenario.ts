import { BenchChild } from '../bench.child.js';
import { interleave, median, pairedRatio } from '../bench.harness.js';
import { figure, type Figure } from '../bench.results.js';
import type { Scenario } from '../bench.scenario.js';

export const routedReadsScenario: Scenario = {
  id: '3',
  title: 'Routed reads: @ReadOnly() across 2 replicas vs raw pg.Pool on one replica',
  async run({ timing, smoke, log }) {
    const started: BenchChild[] = [];
    try {
      const ours = await BenchChild.start('read worker (ours)', 'load.worker.js', ['ours', 'read'], 60_000);
      started.push(ours.child);
      const raw = await BenchChild.start('read worker (raw)', 'load.worker.js', ['raw', 'read'], 60_000);
      started.push(raw.child);
      const slice = (child: BenchChild, concurrency: number) => async () => {
        const reply = await child.request({ cmd: 'run', concurrency, ms: timing.sliceMs }, timing.sliceMs + 30_000);
        return { rate: Number(reply.rate), cpuUs: Number(reply.cpuUs) };
      };
      const figures: Figure[] = [];
      for (const concurrency of [1, 64]) {
        const slices = await interleave(timing.reps, slice(ours.child, concurrency), slice(raw.child, concurrency));
        const runs = { ours: slices.ours.map((s) => s.rate), raw: slices.raw.map((s) => s.rate) };
        const ratio = pairedRatio(runs.ours, runs.raw);
        const addedUs = median(runs.ours.map((o, i) => 1e6 / o - 1e6 / runs.raw[i]!));
        const oursCpu = median(slices.ours.map((s) => s.cpuUs));
        const rawCpu = median(slices.raw.map((s) => s.cpuUs));
        log(`  c=${concurrency}: ours ${median(runs.ours).toFixed(0)}/s raw ${median(runs.raw).toFixed(0)}/s ratio ${ratio.toFixed(3)}`);
        figures.push(
          figure({
            id: `3.c${concurrency}`,
            label: `@ReadOnly() SELECT 1, ${concurrency} caller${concurrency === 1 ? '' : 's'} (ours: 2 replicas × max 10; raw: 1 replica × max 10)`,
            ours: median(runs.ours),
            raw: median(runs.raw),
            reference: 'raw pg.Pool on replica1',
            unit: 'queries/s',
            value: ratio,
            valueUnit: '×',
            samples: runs.ours.map((o, i) => o / runs.raw[i]!),
            note: `${addedUs >= 0 ? '+' : ''}${addedUs.toFixed(2)} µs wall time per query; Node CPU per query ${oursCpu.toFixed(2)} µs vs ${rawCpu.toFixed(2)} µs (ALS scope, replica choice and the promise hooks included)`,
          }),
        );
      }
      const picked = await ours.child.request({ cmd: 'pick', calls: smoke ? 20_000 : 500_000 }, 60_000);
      const selectionNs = Math.max(0, Number(picked.scopedNs) - Number(picked.plainNs));
      log(`  ALS scope + replica choice: ${selectionNs.toFixed(0)} ns per read`);
      figures.push(
        figure({
          id: '3.als-selection-ns',
          label: 'ALS scope (@ReadOnly wrapper) + getStore + round-robin replica choice, no I/O',
          value: selectionNs,
          valueUnit: 'ns',
          note: 'timed in isolation (best of 5 batches) minus a plain method call; the AsyncLocalStorage promise hooks every later promise pays are in the ratios above',
        }),
      );
      return {
        method:
          'Two worker processes (so only ours has AsyncLocalStorage enabled, as in real apps). Ours: a provider method decorated with ' +
          '@ReadOnly() runs `db.query("SELECT 1")` (round-robin over replica1 and replica2, lag checks on). Raw: `pg.Pool.query` on replica1 ' +
          '(with the library replica session settings). Interleaved slices, median of per-pair ratios. The ALS + selection cost is timed ' +
          'separately without I/O.',
        figures,
        details: { readsServedPerReplica: picked.readsServedPerReplica, primaryFallbacks: picked.primaryFallbacks },
      };
    } finally {
      await Promise.all(started.map((c) => c.stop()));
    }
  },
};
