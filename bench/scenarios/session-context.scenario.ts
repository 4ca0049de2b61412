import pg from 'pg';
import { benchCluster, rawPoolConfig } from '../bench.config.js';
import { closedLoop, interleaveSides, median, pairedRatio } from '../bench.harness.js';
import { createOursApp, librarySessionOptions } from '../bench.module.js';
import { atLeast, figure, type Figure } from '../bench.results.js';
import type { Scenario } from '../bench.scenario.js';

const CONCURRENCIES = [1, 64] as const;
const SETTINGS = { 'app.tenant_id': 'tenant-a', 'app.request_id': 'bench' };
const CONTEXT_SQL = "SELECT set_config('app.tenant_id', $1, true), set_config('app.request_id', $2, true), set_config('role', $3, true)";

/** `BEGIN; set_config ×3; SELECT 1; COMMIT` by hand on a raw pg.Pool client: what a context costs without the library. */
async function rawInContext(pool: pg.Pool, role: string): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query(CONTEXT_SQL, [SETTINGS['app.tenant_id'], SETTINGS['app.request_id'], role]);
    await client.query('SELECT 1');
    await client.query('COMMIT');
  } finally {
    client.release();
  }
}

export const sessionContextScenario: Scenario = {
  id: '10',
  title: 'Session context: SELECT 1 in a request scope with no context, and with a role + two settings',
  async run({ timing, log }) {
    const figures: Figure[] = [];
    const session = librarySessionOptions('primary');
    const ours = await createOursApp({ applicationName: 'bench-ours-session' });
    const raw = new pg.Pool(rawPoolConfig(benchCluster.ports.primary, 'bench-raw-session', session));
    const role = benchCluster.user;
    const context = { role, settings: SETTINGS };
    try {
      for (const concurrency of CONCURRENCIES) {
        const runs = await interleaveSides(timing.reps, [
          () => closedLoop(() => ours.db.scope(() => ours.db.query('SELECT 1')), concurrency, timing.sliceMs),
          () => closedLoop(() => raw.query('SELECT 1'), concurrency, timing.sliceMs),
          () => closedLoop(() => ours.db.withSession(context, () => ours.db.query('SELECT 1')), concurrency, timing.sliceMs),
          () => closedLoop(() => rawInContext(raw, role), concurrency, timing.sliceMs),
        ]);
        const [plain, rawPlain, withContext, rawContext] = runs.map((side) => side.map((r) => r.rate)) as [number[], number[], number[], number[]];
        const callers = `${concurrency} caller${concurrency === 1 ? '' : 's'}`;
        log(
          `  c=${concurrency}: no context ${median(plain).toFixed(0)}/s raw ${median(rawPlain).toFixed(0)}/s (${pairedRatio(plain, rawPlain).toFixed(3)}×) | ` +
            `context ${median(withContext).toFixed(0)}/s raw by hand ${median(rawContext).toFixed(0)}/s (${pairedRatio(withContext, rawContext).toFixed(3)}×), vs plain raw ${pairedRatio(withContext, rawPlain).toFixed(3)}×`,
        );
        figures.push(
          figure({
            id: `10.c${concurrency}.none`,
            label: `SELECT 1 in db.scope() with no session context, ${callers}`,
            ours: median(plain),
            raw: median(rawPlain),
            reference: 'raw pg.Pool.query (same session settings)',
            unit: 'queries/s',
            value: pairedRatio(plain, rawPlain),
            valueUnit: '×',
            target: atLeast(0.97),
            samples: plain.map((o, i) => o / rawPlain[i]!),
          }),
          figure({
            id: `10.c${concurrency}.context`,
            label: `SELECT 1 with a session context (role + 2 settings), ${callers}`,
            ours: median(withContext),
            raw: median(rawContext),
            reference: 'raw pg.Pool client: BEGIN, set_config ×3, SELECT 1, COMMIT by hand',
            unit: 'queries/s',
            value: pairedRatio(withContext, rawContext),
            valueUnit: '×',
            samples: withContext.map((o, i) => o / rawContext[i]!),
            note: `against a plain raw pg.Pool.query('SELECT 1'): ${pairedRatio(withContext, rawPlain).toFixed(3)}× (the context costs 3 more round trips: BEGIN, set_config, COMMIT)`,
          }),
        );
      }
    } finally {
      await ours.app.close();
      await raw.end();
    }
    return {
      method:
        'The library (defaults, primary + 2 replicas) and a raw pg.Pool({ max: 10 }) with the same server session settings, on the primary. ' +
        'Four sides alternate in each repetition: ours `db.scope(() => db.query("SELECT 1"))` (the request path with no context), raw `pool.query("SELECT 1")`, ' +
        'ours inside `db.withSession({ role, settings: 2 })` (BEGIN, one set_config statement, SELECT 1, COMMIT), and the same four statements by hand on a raw pg.Pool client. ' +
        'The role is the login role (a role switch all the same). Ratio = median of per-repetition throughput ratios.',
      figures,
    };
  },
};
