import { Module, type INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { DatabaseService, PoolModule, type PoolEvent, type PoolModuleRootOptions } from 'nestjs-pg-pools';
import { inRecovery, patroni, patroniCtl, patroniNodeAt, patroniNodes, patroniQuery, patroniUrl, publishedLeader, timeOf, type PatroniNode } from '../support/patroni.js';
import { sleep } from '../support/wait.js';
import { isConnectionError, isSessionTerminated, neverSent } from '../../lib/errors/sql-state.js';

// The Patroni chaos driver behind `npm run chaos:patroni` (full) and test/failover/patroni-failover.e2e-spec.ts
// (short): one Nest application on the Patroni cluster of scripts/patroni.sh under 8 writer and
// 8 reader loops, through a planned switchover (`patronictl switchover`) or a failover (SIGKILL of
// the leader's Patroni and postmaster, then the killed node rejoins). Every node it stops is
// started again (rejoin) in a finally.

export type PatroniScenario = 'switchover' | 'failover';
/** How the application reaches the cluster: the libpq multi-host URL, or HAProxy's two ports. */
export type PatroniConfig = 'multi-host' | 'haproxy';

export interface PatroniResult {
  scenario: PatroniScenario;
  /** The row's name when it is not the scenario's (e.g. `failover (sync)`). */
  label?: string;
  config: PatroniConfig;
  from: PatroniNode;
  to: PatroniNode | undefined;
  writes: number;
  failedWrites: number;
  /** Failed writes that were sent and lost their connection with no answer (outcome unknown: never run again). */
  lostInFlight: number;
  firstWriteError: string;
  reads: number;
  failedReads: number;
  firstReadError: string;
  slowestWriteMs: number;
  /** Acknowledged writes not on the new leader afterwards. */
  missingAcks: number;
  /** `Date.now()` when Patroni published the new leader (REST /cluster). */
  publishedAt: number | undefined;
  /** First acknowledged write on the new leader, ms after Patroni published it. */
  firstWriteAfterPublishMs: number | undefined;
  /** The old leader (switchover) / killed node (failover, after rejoin) in recovery, then serving a read: ms between. */
  backInReadsMs: number | undefined;
  heldWrites: number;
  longestHoldMs: number;
  durationMs: number;
}

export interface PatroniRunOptions {
  writers?: number;
  readers?: number;
  warmMs?: number;
  afterMs?: number;
  /** Extra module options (e.g. `routing: { fallbackToPrimary: false }`). */
  extra?: Partial<PoolModuleRootOptions>;
  log?: (line: string) => void;
}

const TABLE = 'patroni_chaos';

function moduleOptions(config: PatroniConfig, extra: Partial<PoolModuleRootOptions>): PoolModuleRootOptions {
  const ports = patroniNodes.map((n) => patroni.pgPorts[n]);
  const base: PoolModuleRootOptions =
    config === 'multi-host'
      ? { primary: { connectionString: patroniUrl(ports, { target_session_attrs: 'read-write' }) } }
      : { primary: { connectionString: patroniUrl([patroni.haproxyRw]), endpoint: true }, replicas: [{ connectionString: patroniUrl([patroni.haproxyRo]), endpoint: true }] };
  return { ...base, applicationName: 'chaos-patroni', ...extra };
}

async function startApp(options: PoolModuleRootOptions): Promise<INestApplication> {
  @Module({ imports: [PoolModule.forRoot(options)] })
  class PatroniChaosModule {}
  const ref = await Test.createTestingModule({ imports: [PatroniChaosModule] }).compile();
  const app = ref.createNestApplication({ logger: ['error', 'warn'] });
  await app.init();
  return app;
}

export async function preparePatroni(): Promise<void> {
  await patroniCtl('start');
  await patroniCtl('rejoin');
  await patroniQuery(patroni.haproxyRw, `CREATE TABLE IF NOT EXISTS ${TABLE} (id bigserial PRIMARY KEY, writer int NOT NULL, at timestamptz NOT NULL DEFAULT now())`);
}

export async function runPatroniScenario(scenario: PatroniScenario, config: PatroniConfig, options: PatroniRunOptions = {}): Promise<PatroniResult> {
  const { writers = 8, readers = 8, warmMs = 2000, afterMs = 3000, extra = {}, log = () => undefined } = options;
  const t0 = Date.now();
  const from = await publishedLeader();
  if (from === undefined) throw new Error('the Patroni cluster has no leader; run: bash scripts/patroni.sh start');
  const app = await startApp(moduleOptions(config, extra));
  const db = app.get(DatabaseService);
  const events: PoolEvent[] = [];
  const subscription = db.events$.subscribe((e) => events.push(e));
  const acks: Array<{ id: string; node: PatroniNode; at: number }> = [];
  const writeErrors: string[] = [];
  let lostInFlight = 0;
  const readErrors: string[] = [];
  const reads: Array<{ node: PatroniNode; at: number }> = [];
  let slowestWriteMs = 0;
  let running = true;
  const hardStop = Date.now() + 120_000;
  const writer = async (i: number) => {
    while (running && Date.now() < hardStop) {
      const s = Date.now();
      try {
        const res = await db.query<{ id: string; port: number }>(`INSERT INTO ${TABLE} (writer) VALUES ($1) RETURNING id, inet_server_port() AS port`, [i]);
        acks.push({ id: res.rows[0]!.id, node: patroniNodeAt(res.rows[0]!.port), at: Date.now() });
      } catch (err) {
        writeErrors.push((err as Error).message);
        if (isConnectionError(err) && !neverSent(err) && !isSessionTerminated(err)) lostInFlight++;
        await sleep(20);
      }
      slowestWriteMs = Math.max(slowestWriteMs, Date.now() - s);
      await sleep(5);
    }
  };
  const reader = async () => {
    while (running && Date.now() < hardStop) {
      try {
        const res = await db.replica.query<{ port: number }>('SELECT inet_server_port() AS port');
        reads.push({ node: patroniNodeAt(res.rows[0]!.port), at: Date.now() });
      } catch (err) {
        readErrors.push((err as Error).message);
        await sleep(20);
      }
      await sleep(5);
    }
  };
  const loops = [...Array.from({ length: writers }, (_, i) => writer(i)), ...Array.from({ length: readers }, reader)];
  let to: PatroniNode | undefined;
  let publishedAt: number | undefined;
  let recoveryAt: number | undefined;
  let rejoined = scenario === 'switchover';
  try {
    await sleep(warmMs);
    const published = timeOf(async () => {
      const l = await publishedLeader();
      return l !== undefined && l !== from;
    }, 60_000);
    if (scenario === 'switchover') {
      const oldInRecovery = (async () => {
        await published;
        return timeOf(async () => (await inRecovery(from)) === true, 60_000);
      })();
      await patroniCtl('switchover');
      publishedAt = await published;
      recoveryAt = await oldInRecovery;
    } else {
      await patroniCtl('failover');
      publishedAt = await published;
      await sleep(1000);
      await patroniCtl('rejoin', from);
      rejoined = true;
      recoveryAt = await timeOf(async () => (await inRecovery(from)) === true, 30_000);
    }
    to = await publishedLeader();
    await sleep(afterMs);
  } finally {
    running = false;
    await Promise.all(loops);
    subscription.unsubscribe();
    await app.close();
    if (!rejoined) await patroniCtl('rejoin').catch(() => undefined);
  }
  const onNew = acks.filter((a) => a.node === to && publishedAt !== undefined && a.at >= publishedAt - 2000);
  const firstWrite = onNew[0];
  const backRead = recoveryAt === undefined ? undefined : reads.find((r) => r.node === from && r.at >= recoveryAt);
  let missingAcks = 0;
  if (to !== undefined && acks.length > 0) {
    const present = await patroniQuery<{ n: string }>(to, `SELECT count(*) AS n FROM ${TABLE} WHERE id = ANY($1::bigint[])`, [acks.map((a) => a.id)]);
    missingAcks = acks.length - Number(present[0]!.n);
  }
  const held = events.filter((e): e is Extract<PoolEvent, { type: 'write-held' }> => e.type === 'write-held');
  const result: PatroniResult = {
    scenario,
    config,
    from,
    to,
    writes: acks.length + writeErrors.length,
    failedWrites: writeErrors.length,
    lostInFlight,
    firstWriteError: writeErrors[0] ?? '',
    reads: reads.length + readErrors.length,
    failedReads: readErrors.length,
    firstReadError: readErrors[0] ?? '',
    slowestWriteMs,
    missingAcks,
    publishedAt,
    firstWriteAfterPublishMs: firstWrite && publishedAt !== undefined ? firstWrite.at - publishedAt : undefined,
    backInReadsMs: backRead && recoveryAt !== undefined ? backRead.at - recoveryAt : undefined,
    heldWrites: held.length,
    longestHoldMs: Math.max(0, ...held.map((e) => e.waitedMs)),
    durationMs: Date.now() - t0,
  };
  log(`${scenario} (${config}): ${JSON.stringify(result)}`);
  return result;
}

const ms = (v: number | undefined) => (v === undefined ? '—' : `${v} ms`);

export function renderPatroniTable(results: readonly PatroniResult[]): string {
  const rows = results.map(
    (r) =>
      `| ${r.label ?? r.scenario} ${r.from} → ${r.to ?? '?'} | ${r.config} | ${r.writes} | ${r.failedWrites}${r.lostInFlight ? ` (${r.lostInFlight} lost in flight)` : ''} | ${r.reads} | ${r.failedReads} | ${r.missingAcks} | ${r.slowestWriteMs} ms | ${r.heldWrites} (≤ ${r.longestHoldMs} ms) | ${ms(r.firstWriteAfterPublishMs)} | ${ms(r.backInReadsMs)} |`,
  );
  return [
    '| scenario | config | writes | failed writes | reads | failed reads | acknowledged writes missing | slowest write | held writes | first write on the new leader after Patroni published it | old/killed leader back in reads after it is in recovery |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
    ...rows,
  ].join('\n');
}
