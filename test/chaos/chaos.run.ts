import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { clusterConfig } from '../support/cluster.js';
import { FREEZE_POOL, FREEZE_SCENARIOS, FULL_SCENARIOS, FULL_TIMING, renderNotes, renderTable, runChaos, type ChaosRun } from './chaos.driver.js';
import { missedGoals, renderGoals, TIME_MARGIN_MS } from './chaos.goals.js';
import { commitOf, renderStamp } from '../support/stamp.js';

// `npm run chaos`: the full chaos suite against the real cluster (PGPOOLS_CLUSTER_OFFSET picks a
// copy). Prints the table and the goals it checks and writes them to docs/CHAOS.md with the
// command and the commit that produced them (CHAOS_WRITE=0 only prints). Fails when a goal is
// missed (test/chaos/chaos.goals.ts). Bounded: the whole run has a 5-minute deadline.

const COMMAND = process.env.PGPOOLS_CLUSTER_OFFSET && process.env.PGPOOLS_CLUSTER_OFFSET !== '0' ? `PGPOOLS_CLUSTER_OFFSET=${process.env.PGPOOLS_CLUSTER_OFFSET} npm run chaos` : 'npm run chaos';

function renderDocument(run: ChaosRun, frozen: ChaosRun, commit: string): string {
  const t = run.timing;
  return `# Chaos suite

${renderStamp(COMMAND, commit, run.startedAt.toISOString())} (${os.cpus().length} CPUs, Node ${process.version}, PostgreSQL 15 cluster of
\`scripts/cluster.sh\`: primary + 2 streaming replicas on loopback${clusterConfig.ports.primary !== 55432 ? `, ports ${clusterConfig.ports.primary}–${clusterConfig.ports.replica2}` : ''}). The whole run took ${Math.round(run.durationMs / 1000)} s.

One Nest application (\`PoolModule.forRoot\`, preset \`test\`, min 2 / max 6 per node, acquireTimeoutMs 1000, idleTimeoutMs 1000,
leakDetectionThresholdMs 2000, routing.replicaBanMs 1000, everything else default) under a steady mixed load: ${t.readers} readers
(\`db.replica.query\`) and ${t.writers} writers (\`db.query\` INSERT; every 4th write a \`db.transaction\`), each pausing ${t.paceMs} ms
between requests. Each scenario: ${t.warmMs / 1000} s of load, the disruption, ${t.afterMs / 1000} s more load after recovery; then the load stops
and the pools must return to their baseline (every node at min, nothing in use or waiting, breakers closed, replicas in
rotation, as many server sessions in \`pg_stat_activity\` as pooled connections, and at most one \`<app>:monitor\` and one
\`<app>:roles\` session per node); after the last scenario, \`app.close()\` must leave no session of the application at all.

${renderTable(run)}

- *requests*: requests the load made during the scenario; *failed reads/writes*: requests that rejected.
- *max latency*: slowest request of the scenario (including failed ones).
- *recovery*: see the notes; the goals are in the table below.
- *leaked clients after*: clients still checked out 1 s after the load stopped and every caller had returned, plus server
  sessions of the application (its pools', its \`:monitor\` and \`:roles\` ones) the pools do not account for when the baseline wait ended.
- *crashes*: uncaught exceptions during the scenario (each would end a plain Node process).

${renderNotes(run)}

Goals, checked by this run (it fails when one is missed; a time bound gets +${TIME_MARGIN_MS} ms for the 2 cores shared by Node, the load
and the three servers, a count gets none):

${renderGoals(run)}

Reproduce: \`${COMMAND}\` (it starts the cluster first; \`PGPOOLS_CLUSTER_OFFSET=N\` runs it on an independent copy of the
cluster with every port shifted by N×10). The suite kills and restarts nodes and starts every node again before it returns.
A short form of scenarios (a)–(e) checking the same goals runs in \`npm test\` (\`test/chaos/chaos.e2e-spec.ts\`).

## Hung nodes (SIGSTOP)

A frozen server keeps its sockets open and answers nothing (a network partition, a stuck VM, a black-holing load
balancer): \`kill -STOP\` of the postmaster and every process it started, for ${frozen.timing.freezeMs / 1000} s, then \`kill -CONT\` (in a
\`finally\`). A second application, the same pools with acquireTimeoutMs ${FREEZE_POOL.acquireTimeoutMs} and everything else default
(node monitor: a probe every 250 ms, hung after 500 ms without an answer), under the same mixed load. The whole run took
${Math.round(frozen.durationMs / 1000)} s.

${renderTable(frozen)}

${renderNotes(frozen)}
${freezeFacts(frozen)}

${renderGoals(frozen)}

A short form of (f) and (g) checking the same goals runs in \`npm test\` (\`test/chaos/chaos-freeze.e2e-spec.ts\`), with also:
(f) read rate during the freeze at least half the rate before, slowest read ≤ 2 s.
*(db.transaction)* in the notes marks failures of the load's transactions.
`;
}

function freezeFacts(run: ChaosRun): string {
  const lines: string[] = [];
  for (const r of run.results) {
    const f = r.facts as Record<string, number | undefined>;
    const n = (v: number | undefined) => (v === undefined ? '—' : String(Math.round(v)));
    if (r.scenario === 'replica-freeze') {
      lines.push(
        `- **(f) measured**: out of rotation ${n(f.outOfRotationMs)} ms after SIGSTOP; reads ${n(f.readsPerSecondBefore)}/s before, ${n(f.readsPerSecondDuring)}/s during the freeze; ` +
          `slowest read ${n(f.slowestReadMs)} ms; failed reads during the freeze ${n(f.failedReadsDuring)}.`,
      );
    }
    if (r.scenario === 'primary-freeze') {
      lines.push(
        `- **(g) measured**: ${n(f.writesDuring)} writes during the freeze, ${n(f.failedWritesDuring)} failed (with an error, none hung); slowest write ${n(f.slowestWriteMs)} ms; ` +
          `${n(f.readsOkDuring)} replica reads succeeded during the freeze, ${n(f.failedReadsDuring)} failed; first write after SIGCONT succeeded ${n(f.firstWriteOkAfterThawMs)} ms after it.`,
      );
    }
  }
  return lines.join('\n');
}

it('chaos suite (full)', async () => {
  // Taken before the run: the code measured is the code at the start (docs/CHAOS.md, which it writes, does not count).
  const commit = commitOf(clusterConfig.repoRoot, ['docs/CHAOS.md']);
  const run = await runChaos({
    applicationName: 'chaos-suite',
    timing: FULL_TIMING,
    scenarios: FULL_SCENARIOS,
    log: (line) => process.stdout.write(`${line}\n`),
  });
  process.stdout.write(`\n${renderTable(run)}\n\n${renderNotes(run)}\n\n${renderGoals(run)}\n\n`);
  const frozen = await runChaos({
    applicationName: 'chaos-freeze',
    timing: FULL_TIMING,
    scenarios: FREEZE_SCENARIOS,
    pool: FREEZE_POOL,
    log: (line) => process.stdout.write(`${line}\n`),
  });
  process.stdout.write(`\n${renderTable(frozen)}\n\n${renderNotes(frozen)}\n${freezeFacts(frozen)}\n\n${renderGoals(frozen)}\n\n`);
  if (process.env.CHAOS_WRITE !== '0') {
    const file = path.join(clusterConfig.repoRoot, 'docs', 'CHAOS.md');
    mkdirSync(path.dirname(file), { recursive: true });
    // The Patroni section (`npm run chaos:patroni`) is kept as it is.
    const patroniSection = /<!-- patroni-chaos:start -->[\s\S]*<!-- patroni-chaos:end -->/.exec(existsSync(file) ? readFileSync(file, 'utf8') : '')?.[0];
    const document = renderDocument(run, frozen, commit);
    writeFileSync(file, patroniSection ? `${document.trimEnd()}\n\n${patroniSection}\n` : document);
    process.stdout.write(`Wrote ${path.relative(clusterConfig.repoRoot, file)}\n`);
  }
  const missed = [...missedGoals(run), ...missedGoals(frozen)];
  if (missed.length > 0) process.stdout.write(`Goals missed:\n${missed.map((m) => `- ${m}`).join('\n')}\n`);
  for (const r of [...run.results, ...frozen.results]) {
    expect(r.crashes).toBe(0);
    expect(r.baselineReached).toBe(true);
  }
  expect(missed).toEqual([]);
}, 300_000);
