import { readFile } from 'node:fs/promises';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { benchCluster, rawPoolConfig } from '../bench.config.js';
import { closedLoop, interleaveSides, median, pairedRatio, type LoopResult } from '../bench.harness.js';
import { createOursApp, librarySessionOptions } from '../bench.module.js';
import { atLeast, figure, type Figure } from '../bench.results.js';
import type { Scenario } from '../bench.scenario.js';

const ITEMS = 'bench_ps_items';
const TAGS = 'bench_ps_tags';
const ROWS = 1000;
const PK = `SELECT id, name FROM ${ITEMS} WHERE id = $1`;
/**
 * The pattern is in the text, as an application's fixed filter is: with `LIKE $2` PostgreSQL
 * keeps planning the prepared statement at every execution (its generic plan cannot use the
 * pattern's prefix on the index, so it looks costlier than the custom ones: `generic_plans`
 * stays 0 in pg_prepared_statements) and preparation saves only the parse.
 */
const JOIN_PATTERN = 'tag-%';
const JOIN = `SELECT i.id, i.name, g.tag FROM ${ITEMS} i JOIN ${TAGS} g ON g.item_id = i.id WHERE i.id = $1 AND g.tag LIKE '${JOIN_PATTERN}' ORDER BY g.tag LIMIT 1`;

interface BenchDb {
  bench_ps_items: { id: number; name: string };
  bench_ps_tags: { item_id: number; tag: string };
}

type Send = (text: string, values: unknown[]) => Promise<unknown>;

/** Each call asks for the next id of the 1,000, so every side reads the same rows. */
function ids(): () => number {
  let next = 0;
  return () => (next = (next % ROWS) + 1);
}

function plain(send: Send, statement: 'pk' | 'join'): () => Promise<unknown> {
  const id = ids();
  return statement === 'pk' ? () => send(PK, [id()]) : () => send(JOIN, [id()]);
}

function kyselyOp(k: Kysely<BenchDb>, statement: 'pk' | 'join'): () => Promise<unknown> {
  const id = ids();
  if (statement === 'pk') return () => k.selectFrom(ITEMS).select(['id', 'name']).where('id', '=', id()).executeTakeFirst();
  return () =>
    k
      .selectFrom(`${ITEMS} as i`)
      .innerJoin(`${TAGS} as g`, 'g.item_id', 'i.id')
      .select(['i.id', 'i.name', 'g.tag'])
      .where('i.id', '=', id())
      .where('g.tag', 'like', sql.lit(JOIN_PATTERN))
      .orderBy('g.tag')
      .limit(1)
      .executeTakeFirst();
}

/**
 * The server process behind one session: its private memory (Private_Clean + Private_Dirty of
 * /proc/<pid>/smaps_rollup; the bench runs on the servers' machine) and its prepared statements.
 */
async function sessionMemory(query: (text: string) => Promise<pg.QueryResult>): Promise<{ privateKiB: number | null; statements: number }> {
  const res = await query('SELECT pg_backend_pid() AS pid, (SELECT count(*) FROM pg_prepared_statements)::int AS statements');
  const { pid, statements } = res.rows[0] as { pid: number; statements: number };
  try {
    const rollup = await readFile(`/proc/${pid}/smaps_rollup`, 'utf8');
    const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(rollup)?.[1] ?? Number.NaN);
    return { privateKiB: kib('Private_Clean') + kib('Private_Dirty'), statements };
  } catch {
    return { privateKiB: null, statements };
  }
}


export const preparedStatementsScenario: Scenario = {
  id: '9',
  title: 'Automatic prepared statements: ours (defaults) vs raw pg.Pool on parameterized statements (primary)',
  async run({ timing, log }) {
    const figures: Figure[] = [];
    const session = librarySessionOptions('primary');
    const ours = await createOursApp({ applicationName: 'bench-ours-prepared' });
    const unprepared = await createOursApp({ applicationName: 'bench-ours-unprepared', preparedStatements: { enabled: false } });
    const raw = new pg.Pool(rawPoolConfig(benchCluster.ports.primary, 'bench-raw-prepared', session));
    const oursKysely = new Kysely<BenchDb>({ dialect: new PostgresDialect({ pool: ours.db.routedPool }) });
    const rawKysely = new Kysely<BenchDb>({ dialect: new PostgresDialect({ pool: raw }) });
    const row = (id: string, label: string, reference: string, target: number, runs: LoopResult[][]) => {
      const [oursRates, rawRates, offRates] = runs.map((side) => side.map((r) => r.rate)) as [number[], number[], number[] | undefined];
      const ratio = pairedRatio(oursRates, rawRates);
      const oursCpu = median(runs[0]!.map((r) => r.cpuUs));
      const rawCpu = median(runs[1]!.map((r) => r.cpuUs));
      const off = offRates === undefined ? '' : `; preparation alone (ours vs ours with preparedStatements.enabled false): ${pairedRatio(oursRates, offRates).toFixed(3)}×`;
      log(`  ${id}: ours ${median(oursRates).toFixed(0)}/s raw ${median(rawRates).toFixed(0)}/s ratio ${ratio.toFixed(3)}${off}`);
      figures.push(
        figure({
          id,
          label,
          ours: median(oursRates),
          raw: median(rawRates),
          reference,
          unit: 'queries/s',
          value: ratio,
          valueUnit: '×',
          target: atLeast(target),
          samples: oursRates.map((o, i) => o / rawRates[i]!),
          note: `Node CPU per query ${oursCpu.toFixed(2)} µs vs ${rawCpu.toFixed(2)} µs${off}`,
        }),
      );
    };
    try {
      await raw.query(`DROP TABLE IF EXISTS ${TAGS}, ${ITEMS}`);
      await raw.query(`CREATE TABLE ${ITEMS} (id int PRIMARY KEY, name text NOT NULL)`);
      await raw.query(`CREATE TABLE ${TAGS} (item_id int NOT NULL REFERENCES ${ITEMS} (id), tag text NOT NULL, PRIMARY KEY (item_id, tag))`);
      await raw.query(`INSERT INTO ${ITEMS} SELECT i, 'item ' || i FROM generate_series(1, ${ROWS}) AS i`);
      await raw.query(`INSERT INTO ${TAGS} SELECT i, 'tag-' || k || '-' || i FROM generate_series(1, ${ROWS}) AS i, generate_series(1, 3) AS k`);
      await raw.query(`ANALYZE ${ITEMS}, ${TAGS}`);
      const oursSend: Send = (text, values) => ours.db.query(text, values);
      const rawSend: Send = (text, values) => raw.query(text, values);
      const offSend: Send = (text, values) => unprepared.db.query(text, values);
      for (const [statement, what, target] of [['pk', `PK lookup (\`${PK}\`, ${ROWS} rows)`, 1.12], ['join', 'two-table join on the PK with LIKE and ORDER BY … LIMIT 1', 1.5]] as const) {
        for (const concurrency of [1, 64]) {
          const callers = `${concurrency} caller${concurrency === 1 ? '' : 's'}`;
          const runs = await interleaveSides(timing.reps, [
            () => closedLoop(plain(oursSend, statement), concurrency, timing.sliceMs),
            () => closedLoop(plain(rawSend, statement), concurrency, timing.sliceMs),
            () => closedLoop(plain(offSend, statement), concurrency, timing.sliceMs),
          ]);
          row(`9.${statement}.c${concurrency}`, `${what}, db.query, ${callers}, max 10`, 'raw pg.Pool.query (same session settings)', target, runs);
        }
      }
      for (const statement of ['pk', 'join'] as const) {
        for (const concurrency of [1, 64]) {
          const callers = `${concurrency} caller${concurrency === 1 ? '' : 's'}`;
          const runs = await interleaveSides(timing.reps, [
            () => closedLoop(kyselyOp(oursKysely, statement), concurrency, timing.sliceMs),
            () => closedLoop(kyselyOp(rawKysely, statement), concurrency, timing.sliceMs),
          ]);
          row(`9.kysely-${statement}.c${concurrency}`, `Kysely on db.routedPool, ${statement === 'pk' ? 'PK lookup' : 'the join'}, ${callers}, max 10`, 'Kysely on a raw pg.Pool (same session settings)', 1.12, runs);
        }
      }
      const oursMemory = await ours.db.withClient((c) => sessionMemory((text) => c.query(text)));
      const rawClient = await raw.connect();
      const rawMemory = await sessionMemory((text) => rawClient.query(text)).finally(() => rawClient.release());
      const ourKiB = oursMemory.privateKiB;
      const rawKiB = rawMemory.privateKiB;
      log(`  memory per session: ours ${ourKiB ?? 'n/a'} KiB private (${oursMemory.statements} prepared) raw ${rawKiB ?? 'n/a'} KiB private`);
      if (ourKiB !== null && rawKiB !== null) {
        figures.push(
          figure({
            id: '9.memory',
            label: `Server process memory of one pooled session after the runs (${oursMemory.statements} statements prepared on ours)`,
            ours: ourKiB,
            raw: rawKiB,
            reference: 'a raw pg.Pool session after the same runs',
            unit: 'KiB private',
            value: ourKiB - rawKiB,
            valueUnit: 'KiB more per connection',
            note:
              `per prepared statement ≈ ${oursMemory.statements === 0 ? 'n/a' : ((ourKiB - rawKiB) / oursMemory.statements).toFixed(0)} KiB on the server. ` +
              'On the Node side the cache keeps one Map entry (text → name) per statement, and node-postgres one (name → text).',
          }),
        );
      }
      const c = ours.cluster.primary.counters;
      log(`  primary counters: hits ${c.preparedHits} misses ${c.preparedMisses} evictions ${c.preparedEvictions} invalidations ${c.preparedInvalidations}`);
      return {
        method:
          'One Nest application context with PoolModule.forRoot (primary + 2 replicas, max 10 each, library defaults: preparedStatements on, ' +
          'threshold 3, cacheSize 100) and a raw pg.Pool({ max: 10 }) on the primary with the same server session settings ' +
          `(\`options: '${session ?? ''}'\`), which sends every statement unnamed (parsed and planned by the server each time). ` +
          `Tables: ${ITEMS} (${ROWS} rows, id PRIMARY KEY) and ${TAGS} (3 tags per item, PRIMARY KEY (item_id, tag)). ` +
          `The join: \`${JOIN}\`, the id as its one value and the LIKE pattern in the text, as a fixed filter of an application is ` +
          '(with the pattern sent as a value, PostgreSQL plans the prepared statement again at every execution: its generic plan cannot use the ' +
          "pattern's prefix on the index, so it never looks cheaper than the custom ones, and preparation saves only the parse). " +
          'N callers run the statement back to back for a fixed slice, ids 1…1000 in turn; slices alternate ours, raw, … (the db.query rows add a third ' +
          'side, ours with preparedStatements.enabled false, so the gain of preparation alone shows in the note); ' +
          'ratio = median of per-pair throughput ratios. The Kysely rows run Kysely (PostgresDialect) on db.routedPool (outside a scope: ' +
          'the primary) and on the raw pool. Memory: Private_Clean + Private_Dirty of /proc/<backend pid>/smaps_rollup for one session of each side after the runs.',
        figures,
        details: { primaryCounters: { hits: c.preparedHits, misses: c.preparedMisses, evictions: c.preparedEvictions, invalidations: c.preparedInvalidations }, oursMemory, rawMemory },
      };
    } finally {
      await oursKysely.destroy();
      await ours.app.close();
      await unprepared.app.close();
      await raw.query(`DROP TABLE IF EXISTS ${TAGS}, ${ITEMS}`).catch(() => undefined);
      await rawKysely.destroy();
    }
  },
};
