import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { benchCluster, POOL_MAX, rawPoolConfig } from '../bench.config.js';
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

/** Sessions read per side: a pool's whole size. */
const SESSIONS = POOL_MAX;

/**
 * Takes `SESSIONS` clients at once (so each is a different session), reads `sessionMemory` of each
 * and gives them back: the mean private memory (undefined when /proc cannot be read) and the mean
 * count of prepared statements.
 */
async function everySession(connect: () => Promise<pg.PoolClient>): Promise<{ sessions: number; privateKiB: number | undefined; statements: number }> {
  const clients: pg.PoolClient[] = [];
  try {
    for (let i = 0; i < SESSIONS; i++) clients.push(await connect());
    const read = await Promise.all(clients.map((c) => sessionMemory((text) => c.query(text))));
    const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length;
    const kib = read.map((r) => r.privateKiB);
    return {
      sessions: read.length,
      privateKiB: kib.every((k): k is number => k !== null) ? mean(kib) : undefined,
      statements: mean(read.map((r) => r.statements)),
    };
  } finally {
    for (const c of clients) c.release();
  }
}

const OURS_NAME = 'bench-ours-prepared';
const UNPREPARED_NAME = 'bench-ours-unprepared';
const RAW_NAME = 'bench-raw-prepared';

const KYSELY_NOT_MET =
  'Where the Node process is busy nearly all of its one CPU (see the CPU pinning line under Machine, and "busy" below), the run is bound by the ' +
  "client: Kysely's query building and node-postgres, on both sides. Preparation saves server time (server CPU per query below), which then " +
  'cannot turn into throughput, and what the library adds on the client (Node CPU per query below) counts in full. With the client and the ' +
  'servers sharing the CPUs, or with a server that is the bottleneck, the saving shows as throughput, as in the db.query rows.';

interface Measured extends LoopResult {
  /** Server CPU time (µs) the side's sessions used during the slice, when /proc could be read. */
  serverUs: number | undefined;
}

/** Server CPU per query over every slice of a side (µs), from the ticks of /proc: coarse per slice, fine in sum. */
function serverPerQuery(side: readonly Measured[]): number | undefined {
  let us = 0;
  let ops = 0;
  for (const r of side) {
    if (r.serverUs === undefined) return undefined;
    us += r.serverUs;
    ops += r.ops;
  }
  return ops === 0 ? undefined : us / ops;
}

/** Clock ticks per second of /proc/<pid>/stat's utime and stime (USER_HZ: 100 on Linux). */
const USER_HZ = 100;

/**
 * CPU time the server has spent so far (µs) in each session of one side (by pid), found by their
 * application_name; `undefined` when /proc cannot be read (the bench runs on the servers' machine).
 */
async function serverCpuUs(monitor: pg.Pool, applicationName: string): Promise<Map<number, number> | undefined> {
  const res = await monitor.query<{ pid: number }>(
    "SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend' AND application_name = $1",
    [applicationName],
  );
  const used = new Map<number, number>();
  for (const { pid } of res.rows) {
    let stat: string;
    try {
      stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    } catch (err) {
      // A session that ended since the listing has nothing more to add; no /proc at all: no figure.
      if ((err as { code?: unknown }).code === 'ENOENT' && existsSync('/proc/self/stat')) continue;
      return undefined;
    }
    // After the command name (which may hold spaces: cut at its closing parenthesis) field 3 comes first; utime is field 14, stime 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    used.set(pid, ((Number(fields[11]) + Number(fields[12])) * 1e6) / USER_HZ);
  }
  return used;
}

export const preparedStatementsScenario: Scenario = {
  id: '9',
  title: 'Automatic prepared statements: ours (defaults) vs raw pg.Pool on parameterized statements (primary)',
  async run({ timing, log }) {
    const figures: Figure[] = [];
    const session = librarySessionOptions('primary');
    const ours = await createOursApp({ applicationName: OURS_NAME });
    const unprepared = await createOursApp({ applicationName: UNPREPARED_NAME, preparedStatements: { enabled: false } });
    const raw = new pg.Pool(rawPoolConfig(benchCluster.ports.primary, RAW_NAME, session));
    const oursKysely = new Kysely<BenchDb>({ dialect: new PostgresDialect({ pool: ours.db.routedPool }) });
    const rawKysely = new Kysely<BenchDb>({ dialect: new PostgresDialect({ pool: raw }) });
    // Server CPU is read between slices, from a session of its own (not one of the sides').
    const monitor = new pg.Pool({ ...rawPoolConfig(benchCluster.ports.primary, 'bench-monitor-prepared'), max: 1 });
    const measured =
      (applicationName: string, loop: () => Promise<LoopResult>) =>
      async (): Promise<Measured> => {
        const before = await serverCpuUs(monitor, applicationName);
        const result = await loop();
        const after = await serverCpuUs(monitor, applicationName);
        if (before === undefined || after === undefined) return { ...result, serverUs: undefined };
        // A session opened during the slice counts from zero; one closed during it loses its last ticks.
        let serverUs = 0;
        for (const [pid, us] of after) serverUs += us - (before.get(pid) ?? 0);
        return { ...result, serverUs };
      };
    const row = (id: string, label: string, reference: string, target: number, runs: Measured[][], whenNotMet?: string) => {
      const [oursRates, rawRates, offRates] = runs.map((side) => side.map((r) => r.rate)) as [number[], number[], number[] | undefined];
      const ratio = pairedRatio(oursRates, rawRates);
      const oursCpu = median(runs[0]!.map((r) => r.cpuUs));
      const rawCpu = median(runs[1]!.map((r) => r.cpuUs));
      const busy = (side: Measured[]) => `${(median(side.map((r) => (r.cpuUs * r.rate) / 1e4))).toFixed(0)} %`;
      const oursServer = serverPerQuery(runs[0]!);
      const rawServer = serverPerQuery(runs[1]!);
      const server = oursServer === undefined || rawServer === undefined ? '' : `; server CPU per query ${oursServer.toFixed(2)} µs vs ${rawServer.toFixed(2)} µs`;
      const off = offRates === undefined ? '' : `; preparation alone (ours vs ours with preparedStatements.enabled false): ${pairedRatio(oursRates, offRates).toFixed(3)}×`;
      log(`  ${id}: ours ${median(oursRates).toFixed(0)}/s raw ${median(rawRates).toFixed(0)}/s ratio ${ratio.toFixed(3)}${server}${off}`);
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
          note: `Node CPU per query ${oursCpu.toFixed(2)} µs vs ${rawCpu.toFixed(2)} µs (the Node process busy ${busy(runs[0]!)} vs ${busy(runs[1]!)} of one CPU)${server}${off}`,
          ...(whenNotMet === undefined ? {} : { whenNotMet }),
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
            measured(OURS_NAME, () => closedLoop(plain(oursSend, statement), concurrency, timing.sliceMs)),
            measured(RAW_NAME, () => closedLoop(plain(rawSend, statement), concurrency, timing.sliceMs)),
            measured(UNPREPARED_NAME, () => closedLoop(plain(offSend, statement), concurrency, timing.sliceMs)),
          ]);
          row(`9.${statement}.c${concurrency}`, `${what}, db.query, ${callers}, max 10`, 'raw pg.Pool.query (same session settings)', target, runs);
        }
      }
      for (const statement of ['pk', 'join'] as const) {
        for (const concurrency of [1, 64]) {
          const callers = `${concurrency} caller${concurrency === 1 ? '' : 's'}`;
          const runs = await interleaveSides(timing.reps, [
            measured(OURS_NAME, () => closedLoop(kyselyOp(oursKysely, statement), concurrency, timing.sliceMs)),
            measured(RAW_NAME, () => closedLoop(kyselyOp(rawKysely, statement), concurrency, timing.sliceMs)),
          ]);
          row(
            `9.kysely-${statement}.c${concurrency}`,
            `Kysely on db.routedPool, ${statement === 'pk' ? 'PK lookup' : 'the join'}, ${callers}, max 10`,
            'Kysely on a raw pg.Pool (same session settings)',
            1.12,
            runs,
            KYSELY_NOT_MET,
          );
        }
      }
      // Every pooled session of each side at once (each pool holds its 10 after the 64-caller runs):
      // which statements one session prepared depends on which callers it served.
      const oursMemory = await everySession(() => ours.db.routedPool.connect());
      const rawMemory = await everySession(() => raw.connect());
      log(
        `  memory per session: ours ${oursMemory.privateKiB?.toFixed(0) ?? 'n/a'} KiB private (${oursMemory.statements.toFixed(1)} prepared, ${oursMemory.sessions} sessions) ` +
          `raw ${rawMemory.privateKiB?.toFixed(0) ?? 'n/a'} KiB private (${rawMemory.sessions} sessions)`,
      );
      if (oursMemory.privateKiB !== undefined && rawMemory.privateKiB !== undefined) {
        const more = oursMemory.privateKiB - rawMemory.privateKiB;
        figures.push(
          figure({
            id: '9.memory',
            label: `Server process memory per pooled session after the runs (mean of ${oursMemory.sessions} vs ${rawMemory.sessions} sessions; ${oursMemory.statements.toFixed(1)} statements prepared per session on ours)`,
            ours: oursMemory.privateKiB,
            raw: rawMemory.privateKiB,
            reference: 'the raw pg.Pool sessions after the same runs',
            unit: 'KiB private',
            value: more,
            valueUnit: 'KiB more per connection',
            note:
              `per prepared statement ≈ ${oursMemory.statements === 0 ? 'n/a' : (more / oursMemory.statements).toFixed(0)} KiB on the server ` +
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
          'the primary) and on the raw pool. Server CPU per query: utime + stime of /proc/<pid>/stat of the sessions of each side (found by ' +
          'application_name), read before and after each slice, summed over the slices and divided by their queries. Memory: Private_Clean + Private_Dirty of /proc/<backend pid>/smaps_rollup for every pooled session of each side after the runs (all 10 held at once), averaged per session.',
        figures,
        details: { primaryCounters: { hits: c.preparedHits, misses: c.preparedMisses, evictions: c.preparedEvictions, invalidations: c.preparedInvalidations }, oursMemory, rawMemory },
      };
    } finally {
      await oursKysely.destroy();
      await ours.app.close();
      await unprepared.app.close();
      await raw.query(`DROP TABLE IF EXISTS ${TAGS}, ${ITEMS}`).catch(() => undefined);
      await rawKysely.destroy();
      await monitor.end();
    }
  },
};
