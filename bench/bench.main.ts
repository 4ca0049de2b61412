import 'reflect-metadata';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { commitOf } from '../test/support/stamp.js';
import { benchCluster, FULL_TIMING, repoRoot, serverConfig, SMOKE_TIMING } from './bench.config.js';
import { pinClientAndServers, type Pinning } from './bench.affinity.js';
import { pause, withDeadline } from './bench.harness.js';
import { benchLogger } from './bench.logger.js';
import { renderMarkdown, renderTable, type BenchRun, type MachineFacts } from './bench.report.js';
import type { ScenarioResult } from './bench.results.js';
import type { Scenario } from './bench.scenario.js';
import { acquireReleaseScenario } from './scenarios/acquire-release.scenario.js';
import { connectPerRequestScenario } from './scenarios/connect-per-request.scenario.js';
import { contentionScenario } from './scenarios/contention.scenario.js';
import { httpScenario } from './scenarios/http.scenario.js';
import { memoryScenario } from './scenarios/memory.scenario.js';
import { preparedStatementsScenario } from './scenarios/prepared-statements.scenario.js';
import { queryBuilderScenario } from './scenarios/query-builder.scenario.js';
import { queryPathScenario } from './scenarios/query-path.scenario.js';
import { routedReadsScenario } from './scenarios/routed-reads.scenario.js';
import { sessionContextScenario } from './scenarios/session-context.scenario.js';

const SCENARIOS: readonly Scenario[] = [
  queryPathScenario,
  acquireReleaseScenario,
  routedReadsScenario,
  connectPerRequestScenario,
  httpScenario,
  contentionScenario,
  memoryScenario,
  queryBuilderScenario,
  preparedStatementsScenario,
  sessionContextScenario,
];

/** The command as run, with the cluster copy when it is not the default one. */
function commandLine(script: string): string {
  const offset = process.env.PGPOOLS_CLUSTER_OFFSET;
  return `${offset && offset !== '0' ? `PGPOOLS_CLUSTER_OFFSET=${offset} ` : ''}npm run ${script}`;
}

function parseArgs(argv: string[]) {
  let smoke = false;
  let only: Set<string> | undefined;
  let write = true;
  let reps: number | undefined;
  for (const arg of argv) {
    if (arg === '--smoke') smoke = true;
    else if (arg === '--no-write') write = false;
    else if (arg.startsWith('--only=')) only = new Set(arg.slice('--only='.length).split(','));
    else if (arg.startsWith('--reps=')) {
      const given = arg.slice('--reps='.length);
      if (!/^[1-9][0-9]*$/.test(given)) throw new Error(`Invalid argument --reps: expected a positive whole number of repetitions, got ${JSON.stringify(given)}.`);
      reps = Number(given);
    } else {
      throw new Error(`Unknown argument ${JSON.stringify(arg)}: expected --smoke, --no-write, --only=<ids, e.g. 1,3> or --reps=<repetitions>.`);
    }
  }
  return { smoke, only, write, reps };
}

function packageVersion(name: string): string {
  try {
    return (JSON.parse(readFileSync(path.join(repoRoot, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

/** Waits (bounded) until every server answers; other test runs may be restarting nodes. */
async function waitForServers(timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  const ports = [benchCluster.ports.primary, benchCluster.ports.replica1, benchCluster.ports.replica2];
  let version = '';
  let lastError = '';
  while (Date.now() < deadline) {
    try {
      for (const port of ports) {
        const client = new pg.Client({ ...serverConfig(port), connectionTimeoutMillis: 3000, application_name: 'bench-check' });
        await client.connect();
        try {
          const res = await client.query<{ v: string; r: boolean }>('SELECT version() AS v, pg_is_in_recovery() AS r');
          if ((port === benchCluster.ports.primary) === res.rows[0]!.r) throw new Error(`server on port ${port} has the wrong role`);
          if (port === benchCluster.ports.primary) version = res.rows[0]!.v.split(' on ')[0]!;
        } finally {
          await client.end();
        }
      }
      return version;
    } catch (err) {
      lastError = err instanceof Error ? err.message : String(err);
      await pause(1000);
    }
  }
  throw new Error(`Cannot run the benchmarks because the cluster is not fully up (${lastError}). Please make sure that \`bash scripts/cluster.sh start\` succeeds.`);
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  // --reps shortens the interleaved comparisons (a quick look at a few scenarios); such a run is partial.
  const base = args.smoke ? SMOKE_TIMING : FULL_TIMING;
  const timing = args.reps === undefined ? base : { ...base, reps: args.reps };
  const started = performance.now();
  const postgres = await waitForServers(60_000);
  const machine: MachineFacts = {
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    cores: os.cpus().length,
    memoryGb: os.totalmem() / 1024 ** 3,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    pgDriver: packageVersion('pg'),
    nest: packageVersion('@nestjs/core'),
    postgres,
    loadAverageAtStart: os.loadavg(),
    // The files this command writes do not make the measured code "uncommitted".
    gitCommit: commitOf(repoRoot, ['BENCHMARKS.md', 'bench/results.json']),
    date: new Date().toISOString(),
  };
  pinning = pinClientAndServers([benchCluster.ports.primary, benchCluster.ports.replica1, benchCluster.ports.replica2, benchCluster.pgbouncerPort]);
  machine.cpuPinning = pinning.description;
  console.log(`${args.smoke ? 'Smoke run' : 'Benchmarks'}: ${machine.cpuModel}, ${machine.cores} cores, Node ${machine.node}, ${postgres}`);
  console.log(`CPU pinning: ${pinning.description}`);
  const results: ScenarioResult[] = [];
  const scenarioDeadlineMs = args.smoke ? 90_000 : 480_000;
  // A scenario past its deadline cannot be stopped from here: its load may go on, so no later
  // scenario runs beside it (each is reported as not run, which the report lists as not met).
  let overran: string | undefined;
  for (const scenario of SCENARIOS) {
    if (args.only && !args.only.has(scenario.id)) continue;
    console.log(`[${scenario.id}] ${scenario.title}`);
    const t0 = performance.now();
    let settled = true;
    try {
      if (overran !== undefined) {
        throw new Error(`Not run: scenario ${overran} overran its deadline and may still be running, which would distort these figures. Please run the benchmarks again.`);
      }
      await waitForServers(60_000);
      if (scenario.unpinnedBecause === undefined) pinning.pin();
      else pinning.restore();
      settled = false;
      const running = scenario.run({ timing, smoke: args.smoke, log: (message) => console.log(message) });
      running.then(
        () => (settled = true),
        () => (settled = true),
      );
      const outcome = await withDeadline(running, Math.max(scenarioDeadlineMs, scenario.deadlineMs?.(timing) ?? 0), `scenario ${scenario.id}`);
      if (scenario.unpinnedBecause !== undefined && pinning.available) {
        outcome.method += ` This scenario runs without CPU pinning, every process free to use every CPU: ${scenario.unpinnedBecause}`;
      }
      results.push({ id: scenario.id, title: scenario.title, ...outcome, libraryLog: benchLogger.drain(), durationMs: performance.now() - t0 });
    } catch (err) {
      if (!settled) overran = scenario.id;
      const message = err instanceof Error ? (err.stack ?? err.message) : String(err);
      console.error(`[${scenario.id}] failed: ${message}`);
      results.push({ id: scenario.id, title: scenario.title, method: '', figures: [], error: message, libraryLog: benchLogger.drain(), durationMs: performance.now() - t0 });
    }
    const logged = results.at(-1)!.libraryLog!;
    if (logged.length > 0) console.log(`  library log (warn/error, deduplicated):\n${logged.map((l) => `    ${l}`).join('\n')}`);
  }
  machine.loadAverageAtEnd = os.loadavg();
  pinning.restore();
  const run: BenchRun = {
    mode: args.smoke ? 'smoke' : 'full',
    command: commandLine(args.smoke ? 'bench:smoke' : 'bench'),
    machine,
    durationMs: performance.now() - started,
    scenarios: results,
  };
  console.log('');
  console.log(renderTable(results));
  console.log(`\nTotal ${(run.durationMs / 1000).toFixed(1)} s.`);
  if (args.write) {
    if (args.smoke || args.only || args.reps !== undefined) {
      const file = path.join(repoRoot, 'bench/.tmp', args.smoke ? 'results.smoke.json' : 'results.partial.json');
      mkdirSync(path.dirname(file), { recursive: true });
      writeFileSync(file, `${JSON.stringify(run, null, 2)}\n`);
      console.log(`Wrote ${path.relative(repoRoot, file)} (${args.smoke ? 'smoke' : 'partial'} runs never touch BENCHMARKS.md).`);
    } else {
      writeFileSync(path.join(repoRoot, 'bench/results.json'), `${JSON.stringify(run, null, 2)}\n`);
      writeFileSync(path.join(repoRoot, 'BENCHMARKS.md'), renderMarkdown(run));
      console.log('Wrote bench/results.json and BENCHMARKS.md.');
    }
  }
  return results.some((r) => r.error !== undefined) ? 1 : 0;
}

// If nothing keeps the event loop alive while a step waits (say, on an unref'd child), Node exits
// with 0 in the middle of the run; make that a failure that says so.
process.on('exit', (code) => {
  // However the run ends, the servers get every CPU back.
  pinning?.restore();
  if (code === 0 && !finished) {
    process.exitCode = 1;
    console.error('The benchmark stopped before it finished: the event loop ran empty while a step was waiting.');
  }
});
let finished = false;
let pinning: Pinning | undefined;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    console.error(`Stopped by ${signal}.`);
    process.exit(130);
  });
}
main().then(
  (code) => {
    finished = true;
    process.exit(code);
  },
  (err: unknown) => {
    console.error(err instanceof Error ? (err.stack ?? err.message) : err);
    process.exit(1);
  },
);
