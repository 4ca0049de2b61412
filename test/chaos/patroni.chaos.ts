import { readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DEFAULT_HOLD_WRITES_MS } from '../../lib/config/resolve-options.js';
import { repoRoot } from '../support/cluster.js';
import { patroni, patroniCtl } from '../support/patroni.js';
import { preparePatroni, renderPatroniTable, runPatroniScenario, type PatroniResult } from './patroni.driver.js';

// `npm run chaos:patroni`: the Patroni chaos suite (scripts/patroni.sh: etcd + three Patroni-managed
// PostgreSQL 15 nodes + HAProxy). Planned switchovers and failovers (SIGKILL of the leader's Patroni
// and postmaster, then it rejoins) under 8 writer + 8 reader loops, with the multi-host primary URL
// and with HAProxy's two ports; one failover with Patroni's synchronous_mode. Writes the table to
// the "Patroni" section of docs/CHAOS.md (CHAOS_WRITE=0 only prints), then asserts the goals.
// Bounded (10 minutes); every node it kills rejoins, synchronous_mode is switched off again.

const COMMAND = 'npm run chaos:patroni';
const START = '<!-- patroni-chaos:start -->';
const END = '<!-- patroni-chaos:end -->';

function renderSection(results: readonly PatroniResult[], startedAt: Date, durationMs: number): string {
  return `${START}
## Patroni: switchover and failover

Produced by \`${COMMAND}\` on ${startedAt.toISOString()} (${os.cpus().length} CPUs, Node ${process.version}) on the cluster of
\`scripts/patroni.sh\`: etcd, three Patroni 3.0 nodes running PostgreSQL 15 (asynchronous streaming replication, ttl ${patroni.ttl},
loop_wait ${patroni.loopWait}) and HAProxy (read-write port checked on Patroni's REST \`/primary\`, read-only port on \`/replica\`), all
on loopback. The whole run took ${Math.round(durationMs / 1000)} s.

One Nest application per row, every option at its default (\`failover.holdWritesMs\` ${DEFAULT_HOLD_WRITES_MS}) except
\`routing.fallbackToPrimary: false\` in the failover rows, under 8 writer loops (\`db.query\` INSERT) and 8 reader loops
(\`db.replica.query\`). *multi-host*: \`primary\` is the libpq multi-host URL of the three nodes
(\`target_session_attrs=read-write\`); *haproxy*: \`primary\` is HAProxy's read-write port, \`replicas\` its read-only port.
*switchover*: \`patronictl switchover\` to a streaming replica; *failover*: SIGKILL of the leader's Patroni and postmaster, the
killed node rejoins a second after Patroni published the new leader; *failover (sync)*: the same with Patroni's
\`synchronous_mode: true\`.

${renderPatroniTable(results)}

- *failed writes*: writes that rejected; *lost in flight*: those sent when the old primary went away whose connection was lost with
  no answer (their outcome is unknown, so they are never run again).
- *acknowledged writes missing*: acknowledged writes not on the new leader afterwards (asynchronous replication may lose the last
  ones in a failover; none with \`synchronous_mode\`).
- *held writes*: \`write-held\` events (writes that waited for the new primary) and the longest wait.
- *back in reads* is not measured behind HAProxy (—): pooled read connections stay on the backend they were opened to, so the
  old leader serves reads through the read-only port as new connections are opened (\`maxLifetimeMs\`), as HAProxy balances them.
- Goals: switchover: 0 failed writes (but those lost in flight), 0 failed reads, 0 acknowledged writes missing, slowest write
  ≤ holdWritesMs, the old leader back in reads ≤ 1 s after it is in recovery; failover: first write on the new leader ≤ 1 s after
  Patroni published it, 0 failed reads, the killed node back in reads ≤ 1 s after it is in recovery again.

Reproduce: \`${COMMAND}\` (it starts the Patroni cluster first; about 10 s the first time). A short form (one switchover, one
failover, multi-host URL) runs in \`npm test\` (\`test/failover/patroni-failover.e2e-spec.ts\`, about 45 s).
${END}`;
}

function writeSection(section: string): string {
  const file = path.join(repoRoot, 'docs', 'CHAOS.md');
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    text = '# Chaos suite\n';
  }
  const start = text.indexOf(START);
  const end = text.indexOf(END);
  const next = start >= 0 && end > start ? `${text.slice(0, start)}${section}${text.slice(end + END.length)}` : `${text.trimEnd()}\n\n${section}\n`;
  writeFileSync(file, next);
  return path.relative(repoRoot, file);
}

it('Patroni chaos suite', async () => {
  const startedAt = new Date();
  const log = (line: string) => process.stdout.write(`${line}\n`);
  await preparePatroni();
  const results: PatroniResult[] = [];
  results.push(await runPatroniScenario('switchover', 'multi-host', { log }));
  results.push(await runPatroniScenario('switchover', 'haproxy', { log }));
  const noFallback = { routing: { fallbackToPrimary: false } };
  results.push(await runPatroniScenario('failover', 'multi-host', { extra: noFallback, log }));
  results.push(await runPatroniScenario('failover', 'haproxy', { extra: noFallback, log }));
  await patroniCtl('sync', 'on');
  try {
    const sync = await runPatroniScenario('failover', 'multi-host', { extra: noFallback, log });
    results.push({ ...sync, label: 'failover (sync)' });
  } finally {
    await patroniCtl('sync', 'off');
  }
  const table = renderPatroniTable(results);
  log(`\n${table}\n`);
  if (process.env.CHAOS_WRITE !== '0') log(`Wrote ${writeSection(renderSection(results, startedAt, Date.now() - startedAt.getTime()))}`);
  const goals = results.map((r) => {
    const switchover = r.scenario === 'switchover';
    return {
      row: `${r.label ?? r.scenario} ${r.config}`,
      failedReads: r.failedReads,
      failedWrites: switchover ? r.failedWrites - r.lostInFlight : 0,
      missingAcks: switchover || r.label === 'failover (sync)' ? r.missingAcks : 0,
      slowestWithinHold: switchover ? r.slowestWriteMs <= DEFAULT_HOLD_WRITES_MS : true,
      // Behind HAProxy the pooled read connections stay on the backends they were opened to: HAProxy, not the library, decides when the old leader serves reads again.
      backInReadsWithin1s: r.config === 'haproxy' || (r.backInReadsMs !== undefined && r.backInReadsMs <= 1000),
      firstWriteWithin1s: switchover || (r.firstWriteAfterPublishMs !== undefined && r.firstWriteAfterPublishMs <= 1000),
    };
  });
  expect(goals).toEqual(goals.map((g) => ({ row: g.row, failedReads: 0, failedWrites: 0, missingAcks: 0, slowestWithinHold: true, backInReadsWithin1s: true, firstWriteWithin1s: true })));
}, 600_000);
