import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { benchCluster, rawPoolConfig } from '../bench.config.js';
import { closedLoop, interleaveSides, median, pairedRatio } from '../bench.harness.js';
import { createOursApp, librarySessionOptions } from '../bench.module.js';
import { atLeast, figure, type Figure } from '../bench.results.js';
import type { Scenario } from '../bench.scenario.js';

const TABLE = 'bench_qb_items';
const ROWS = 1000;

interface BenchDb {
  bench_qb_items: { id: number; name: string };
}

function byId(kysely: Kysely<BenchDb>): () => Promise<unknown> {
  let next = 0;
  return () => {
    next = (next % ROWS) + 1;
    return kysely.selectFrom(TABLE).select(['id', 'name']).where('id', '=', next).executeTakeFirst();
  };
}

export const queryBuilderScenario: Scenario = {
  id: '8',
  title: 'Query builder: Kysely on db.routedPool vs Kysely on a raw pg.Pool (primary)',
  async run({ timing, log }) {
    const figures: Figure[] = [];
    const session = librarySessionOptions('primary');
    const ours = await createOursApp({ applicationName: 'bench-ours-kysely' });
    const raw = new pg.Pool(rawPoolConfig(benchCluster.ports.primary, 'bench-raw-kysely', session));
    const oursKysely = new Kysely<BenchDb>({ dialect: new PostgresDialect({ pool: ours.db.routedPool }) });
    const rawKysely = new Kysely<BenchDb>({ dialect: new PostgresDialect({ pool: raw }) });
    try {
      await raw.query(
        `CREATE TABLE IF NOT EXISTS ${TABLE} (id int PRIMARY KEY, name text NOT NULL); ` +
          `INSERT INTO ${TABLE} (id, name) SELECT i, 'item ' || i FROM generate_series(1, ${ROWS}) AS i ON CONFLICT (id) DO NOTHING`,
      );
      for (const concurrency of [1, 64]) {
        const runs = await interleaveSides(timing.reps, [
          () => closedLoop(byId(oursKysely), concurrency, timing.sliceMs),
          () => closedLoop(byId(rawKysely), concurrency, timing.sliceMs),
        ]);
        const [oursRates, rawRates] = runs.map((side) => side.map((r) => r.rate)) as [number[], number[]];
        const ratio = pairedRatio(oursRates, rawRates);
        const oursCpu = median(runs[0]!.map((r) => r.cpuUs));
        const rawCpu = median(runs[1]!.map((r) => r.cpuUs));
        log(`  c=${concurrency}: ours ${median(oursRates).toFixed(0)}/s raw ${median(rawRates).toFixed(0)}/s ratio ${ratio.toFixed(3)}`);
        figures.push(
          figure({
            id: `8.c${concurrency}`,
            label: `Kysely selectFrom … where id = $1, ${concurrency} caller${concurrency === 1 ? '' : 's'}, max 10`,
            ours: median(oursRates),
            raw: median(rawRates),
            reference: 'Kysely on a raw pg.Pool (same session settings)',
            unit: 'queries/s',
            value: ratio,
            valueUnit: '×',
            target: atLeast(0.95),
            samples: oursRates.map((o, i) => o / rawRates[i]!),
            note: `Node CPU per query ${oursCpu.toFixed(2)} µs vs ${rawCpu.toFixed(2)} µs`,
          }),
        );
      }
    } finally {
      await oursKysely.destroy();
      await ours.app.close();
      await raw.query(`DROP TABLE IF EXISTS ${TABLE}`).catch(() => undefined);
      await rawKysely.destroy();
    }
    return {
      method:
        'One Nest application context with PoolModule.forRoot (primary + 2 replicas, max 10 each, library defaults) and a raw ' +
        `pg.Pool({ max: 10 }) on the primary with the same server session settings (\`options: '${session ?? ''}'\`). Each side runs ` +
        `Kysely (PostgresDialect) \`selectFrom('${TABLE}').select(['id', 'name']).where('id', '=', n)\` over ${ROWS} rows, outside any ` +
        'request scope (so db.routedPool sends it to the primary, as a write for read-your-writes would be if a scope were open). ' +
        'Kysely takes a client with pool.connect() for every query; on db.routedPool that client takes a connection only for the ' +
        'statement. Slices alternate ours, raw, …; ratio = median of per-pair throughput ratios.',
      figures,
    };
  },
};
