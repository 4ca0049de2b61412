import pg from 'pg';
import { benchCluster, serverConfig } from '../bench.config.js';
import { closedLoop, interleave, median, pairedRatio } from '../bench.harness.js';
import { createOursApp, librarySessionOptions } from '../bench.module.js';
import { atLeast, figure } from '../bench.results.js';
import type { Scenario } from '../bench.scenario.js';

const CONCURRENCY = 10;

export const connectPerRequestScenario: Scenario = {
  id: '4',
  title: 'Pool vs connect-per-request',
  async run({ timing, log }) {
    const ours = await createOursApp({ applicationName: 'bench-ours-connect' });
    try {
      const config = { ...serverConfig(benchCluster.ports.primary), application_name: 'bench-connect-per-request', options: librarySessionOptions('primary') };
      const connectPerRequest = async () => {
        const client = new pg.Client(config);
        await client.connect();
        try {
          await client.query('SELECT 1');
        } finally {
          await client.end();
        }
      };
      const runs = await interleave(
        timing.reps,
        () => closedLoop(() => ours.db.query('SELECT 1'), CONCURRENCY, timing.sliceMs),
        () => closedLoop(connectPerRequest, CONCURRENCY, timing.connectSliceMs),
      );
      const oursRates = runs.ours.map((r) => r.rate);
      const rawRates = runs.raw.map((r) => r.rate);
      const ratio = pairedRatio(oursRates, rawRates);
      log(`  pool ${median(oursRates).toFixed(0)}/s connect-per-request ${median(rawRates).toFixed(0)}/s ratio ${ratio.toFixed(1)}`);
      return {
        method:
          `${CONCURRENCY} callers (so both sides hold at most ${CONCURRENCY} server connections) run SELECT 1: through DatabaseService ` +
          '(pool max 10) vs a new pg.Client per query (connect with SCRAM-SHA-256, query, end). Interleaved slices, median of per-pair ratios.',
        figures: [
          figure({
            id: '4.ratio',
            label: `SELECT 1, ${CONCURRENCY} callers: pooled vs new connection per query`,
            ours: median(oursRates),
            raw: median(rawRates),
            reference: 'new pg.Client per query',
            unit: 'queries/s',
            value: ratio,
            valueUnit: '×',
            target: atLeast(50),
            samples: oursRates.map((o, i) => o / rawRates[i]!),
          }),
        ],
      };
    } finally {
      await ours.app.close();
    }
  },
};
