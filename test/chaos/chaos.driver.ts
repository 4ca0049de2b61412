import pg from 'pg';
import { PoolAcquireTimeoutError, type DatabaseService } from 'nestjs-pg-pools';
import type { NodePool } from '../../lib/pool/node-pool.js';
import { startApp, type TestApp } from '../support/app.js';
import { adminQuery, clusterConfig, clusterCtl, nodeOptions, replicaOptions, type PgNodeName } from '../support/cluster.js';
import { poolSessions, sessions, terminateSessionPids, type SessionRow } from '../support/sessions.js';
import { sleep, waitFor, within } from '../support/wait.js';
import { freezeNode } from './freeze.js';

// The chaos driver behind `npm run chaos` (full) and test/chaos/chaos.e2e-spec.ts (short): one Nest
// application with a primary + two replicas under a steady mixed load (reads on replicas, writes
// and transactions on the primary), and five disruptions of the real cluster:
//   (a) kill -9 a replica, then start it again;
//   (b) restart the primary (pg_ctl stop -m fast + start);
//   (c) pg_terminate_backend every pooled connection, on every node;
//   (d) hold clients past leakDetectionThresholdMs;
//   (e) hold every primary connection, so the pool is exhausted and callers queue.
// After each scenario the load stops and the pools must come back to their baseline (min
// connections, nothing in use or waiting, breakers closed, replicas in rotation) with no server
// session left over. Every node the driver stops is started again before it returns.

export type ScenarioName = 'replica-kill' | 'primary-restart' | 'terminate-all' | 'terminate-busy' | 'leak' | 'exhaust' | 'replica-freeze' | 'primary-freeze' | 'primary-promoted';

/** The scenarios of the issue, (a)–(e); the short e2e form runs these. */
export const SCENARIOS: readonly ScenarioName[] = ['replica-kill', 'primary-restart', 'terminate-all', 'leak', 'exhaust'];
/** Plus (c′): sessions killed in the middle of statements and transactions, to show what callers see then. */
export const FULL_SCENARIOS: readonly ScenarioName[] = ['replica-kill', 'primary-restart', 'terminate-all', 'terminate-busy', 'leak', 'exhaust', 'primary-promoted'];
/**
 * Hung nodes (SIGSTOP: sockets stay open, nothing answers), run with `FREEZE_POOL`:
 *   (f) replica1 frozen under read load; (g) the primary frozen under mixed load.
 */
export const FREEZE_SCENARIOS: readonly ScenarioName[] = ['replica-freeze', 'primary-freeze'];
/** The freeze rows' pool: the chaos pool with `acquireTimeoutMs: 2000`, as the issue states them. */
export const FREEZE_POOL = Object.freeze({ acquireTimeoutMs: 2000 });

const SCENARIO_LABEL: Record<ScenarioName, string> = {
  'replica-kill': '(a) kill -9 replica1, restart it',
  'primary-restart': '(b) restart primary (-m fast)',
  'terminate-all': '(c) pg_terminate_backend every pooled (idle) connection',
  'terminate-busy': "(c′) pg_terminate_backend every connection, busy ones too",
  leak: '(d) hold 2 clients past the leak threshold',
  exhaust: '(e) exhaust the primary pool',
  'replica-freeze': '(f) SIGSTOP replica1 under read load, SIGCONT',
  'primary-freeze': '(g) SIGSTOP the primary under mixed load, SIGCONT',
  'primary-promoted': '(h) primary promoted: stop primary -m immediate, promote replica1',
};

export interface ChaosTiming {
  /** Load before the disruption. */
  warmMs: number;
  /** Load while a node is down / clients are held. */
  disruptMs: number;
  /** Load after recovery. */
  afterMs: number;
  /** Upper bound for the pools to come back to baseline after a scenario. */
  baselineTimeoutMs: number;
  readers: number;
  writers: number;
  paceMs: number;
  /** How long a node stays frozen in (f) and (g). */
  freezeMs: number;
}

export const FULL_TIMING: ChaosTiming = { warmMs: 3000, disruptMs: 3000, afterMs: 3000, baselineTimeoutMs: 20_000, readers: 6, writers: 6, paceMs: 2, freezeMs: 8000 };
export const SHORT_TIMING: ChaosTiming = { warmMs: 800, disruptMs: 1200, afterMs: 1200, baselineTimeoutMs: 15_000, readers: 3, writers: 3, paceMs: 5, freezeMs: 4000 };

export const CHAOS_POOL = Object.freeze({
  min: 2,
  max: 6,
  acquireTimeoutMs: 1000,
  idleTimeoutMs: 1000,
  leakDetectionThresholdMs: 2000,
  replicaBanMs: 1000,
});

export interface Op {
  kind: 'read' | 'write';
  /** A write done as a `db.transaction` (INSERT + UPDATE). */
  transaction: boolean;
  start: number;
  end: number;
  ok: boolean;
  code?: string;
  error?: string;
}

export interface ScenarioResult {
  scenario: ScenarioName;
  label: string;
  requests: number;
  reads: number;
  writes: number;
  failedReads: number;
  failedWrites: number;
  /** Failures by error name/SQLSTATE, e.g. `{ ECONNREFUSED: 12, PoolUnavailableError: 40 }`. */
  failuresByCode: Record<string, number>;
  maxLatencyMs: number;
  /** What `recoveryMs` measures for this scenario. */
  recoveryOf: string;
  recoveryMs: number | undefined;
  /**
   * Clients still checked out 1 s after the load stopped and every caller had returned, plus server
   * sessions of the application (its pools' and its `<app>:monitor` / `<app>:roles` ones) the
   * pools do not account for when the baseline wait ended.
   */
  leakedAfter: number;
  /** Uncaught exceptions during the scenario (each would have crashed a plain Node process). */
  crashes: number;
  baselineReached: boolean;
  baselineMs: number;
  ops: Op[];
  /** Scenario-specific facts the e2e test asserts. */
  facts: Record<string, unknown>;
}

export interface ChaosRun {
  applicationName: string;
  timing: ChaosTiming;
  startedAt: Date;
  durationMs: number;
  results: ScenarioResult[];
  /** Sessions of the application (its `<app>:*` ones included) still on any node 5 s after `app.close()`, by application_name. */
  sessionsLeftAfterClose: string[];
}

/** Waits up to `timeoutMs` for every session of the application to end on every node; returns the names still there. */
async function sessionsLeftAfter(applicationName: string, timeoutMs: number): Promise<string[]> {
  const left = async () => (await Promise.all(PG_NODES.map((node) => sessions(node, applicationName)))).flat().map((r) => r.application_name);
  await waitFor(`no ${applicationName} session left`, async () => (await left()).length === 0, timeoutMs, 50).catch(() => undefined);
  return left();
}

export interface ChaosOptions {
  applicationName: string;
  timing: ChaosTiming;
  scenarios?: readonly ScenarioName[];
  /** Pool settings that differ from `CHAOS_POOL`. */
  pool?: { acquireTimeoutMs?: number; holdWritesMs?: number };
  log?: (line: string) => void;
}

const TABLE = 'chaos_events';

function codeOf(err: unknown): string {
  const e = err as { code?: unknown; name?: unknown } | undefined;
  if (e?.name && e.name !== 'Error' && e.name !== 'error' && e.name !== 'DatabaseError') return String(e.name);
  if (typeof e?.code === 'string') return e.code;
  return String((err as Error)?.message ?? err).slice(0, 60);
}

/** Steady mixed load: readers on `db.replica`, writers on the primary (every 4th write is a transaction). */
class Load {
  readonly ops: Op[] = [];
  #running = false;
  #workers: Promise<void>[] = [];

  constructor(
    private readonly db: DatabaseService,
    private readonly timing: ChaosTiming,
    private readonly tag: string,
  ) {}

  start(): void {
    this.#running = true;
    for (let i = 0; i < this.timing.readers; i++) this.#workers.push(this.#loop('read', i));
    for (let i = 0; i < this.timing.writers; i++) this.#workers.push(this.#loop('write', i));
  }

  async stop(): Promise<void> {
    this.#running = false;
    await within('load workers to stop', 15_000, Promise.all(this.#workers));
    this.#workers = [];
  }

  async #loop(kind: 'read' | 'write', worker: number): Promise<void> {
    let n = 0;
    while (this.#running) {
      const start = Date.now();
      const transaction = kind === 'write' && n % 4 === 3;
      try {
        if (kind === 'read') {
          await this.db.replica.query(`SELECT count(*)::int AS n FROM ${TABLE} WHERE worker = $1`, [worker]);
        } else if (transaction) {
          await this.db.transaction(async (tx) => {
            await tx.query(`INSERT INTO ${TABLE} (scenario, worker) VALUES ($1, $2)`, [this.tag, worker]);
            await tx.query(`UPDATE ${TABLE} SET at = now() WHERE id = (SELECT max(id) FROM ${TABLE} WHERE worker = $1)`, [worker]);
          });
        } else {
          await this.db.query(`INSERT INTO ${TABLE} (scenario, worker) VALUES ($1, $2)`, [this.tag, worker]);
        }
        this.ops.push({ kind, transaction, start, end: Date.now(), ok: true });
      } catch (err) {
        this.ops.push({ kind, transaction, start, end: Date.now(), ok: false, code: codeOf(err), error: String((err as Error)?.message ?? err).slice(0, 200) });
      }
      n++;
      await sleep(this.timing.paceMs);
    }
  }
}

interface CrashCounter {
  count: number;
  messages: string[];
}

type CaptureProcess = { setUncaughtExceptionCaptureCallback(fn: ((err: unknown) => void) | null): void };

/** Counts uncaught exceptions (in a plain Node process each one is a crash) while `fn` runs. */
async function countingCrashes<T>(counter: CrashCounter, fn: () => Promise<T>): Promise<T> {
  const proc = process as unknown as CaptureProcess;
  proc.setUncaughtExceptionCaptureCallback((err) => {
    counter.count++;
    counter.messages.push(String((err as Error)?.stack ?? err).slice(0, 500));
  });
  try {
    return await fn();
  } finally {
    proc.setUncaughtExceptionCaptureCallback(null);
  }
}

/** Resolves with the time the node first accepts a connection again (polled every 20 ms), up to `timeoutMs`. */
async function firstAccept(node: PgNodeName, sinceDown: () => boolean, timeoutMs: number): Promise<number | undefined> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (sinceDown()) {
      const client = new pg.Client({ ...clusterConfig[node], application_name: 'chaos-probe', connectionTimeoutMillis: 500 });
      try {
        await client.connect();
        const at = Date.now();
        await client.end().catch(() => undefined);
        return at;
      } catch {
        await client.end().catch(() => undefined);
      }
    }
    await sleep(20);
  }
  return undefined;
}

function nodesOf(t: TestApp): NodePool[] {
  return t.cluster.nodes;
}

const SERVER_OF: Record<string, PgNodeName> = { primary: 'primary', 'replica-1': 'replica1', 'replica-2': 'replica2' };
const PG_NODES: readonly PgNodeName[] = ['primary', 'replica1', 'replica2'];

export interface BaselineCheck {
  reached: boolean;
  ms: number;
  /** Server sessions of the application the pools do not account for when the wait ended (see `unaccountedSessions`). */
  leaked: number;
  detail: string;
}

/**
 * What a node's server sessions hold beyond its pool: pool sessions (`application_name` exactly)
 * above the pool's `total`, plus every `<app>:*` session beyond one of each name (one `:monitor`,
 * one `:roles` per node is what the library keeps). Problems are described in `problems`.
 */
function unaccountedSessions(node: string, rows: SessionRow[], applicationName: string, poolTotal: number, problems: string[]): number {
  const pooled = rows.filter((r) => r.application_name === applicationName).length;
  if (pooled !== poolTotal) problems.push(`${node} server sessions=${pooled} pool total=${poolTotal}`);
  let extra = Math.max(0, pooled - poolTotal);
  const companions = new Map<string, number>();
  for (const r of rows) if (r.application_name !== applicationName) companions.set(r.application_name, (companions.get(r.application_name) ?? 0) + 1);
  for (const [name, n] of companions) {
    if (n > 1) problems.push(`${node} ${n} sessions named ${name}`);
    extra += n - 1;
  }
  return extra;
}

/**
 * Waits (bounded) until every pool is back at min, idle, breakers closed, replicas in rotation,
 * and the server holds the pools' sessions and at most one `<app>:monitor` / `<app>:roles` each.
 */
export async function waitForBaseline(t: TestApp, applicationName: string, timeoutMs: number): Promise<BaselineCheck> {
  const started = Date.now();
  let detail = '';
  let leaked = 0;
  const deadline = started + timeoutMs;
  while (Date.now() < deadline) {
    const problems: string[] = [];
    leaked = 0;
    for (const node of nodesOf(t)) {
      const s = node.status();
      if (s.inUse !== 0 || s.waiting !== 0 || s.total !== node.config.min || s.idle !== node.config.min || s.breaker !== 'closed') {
        problems.push(`${node.name} total=${s.total} idle=${s.idle} inUse=${s.inUse} waiting=${s.waiting} breaker=${s.breaker}`);
      }
      try {
        leaked += unaccountedSessions(node.name, await sessions(SERVER_OF[node.name]!, applicationName), applicationName, s.total, problems);
      } catch (err) {
        problems.push(`${node.name} not reachable: ${String(err)}`);
      }
    }
    for (const r of t.cluster.replicas) if (r.bannedUntil !== 0) problems.push(`${r.node.name} banned`);
    detail = problems.join('; ');
    if (problems.length === 0) break;
    await sleep(100);
  }
  return { reached: detail === '', ms: Date.now() - started, leaked, detail };
}

/** Clients checked out of any pool of the application. */
function checkedOut(t: TestApp): number {
  return nodesOf(t).reduce((n, node) => n + node.status().inUse, 0);
}

/**
 * How long a client may still be out after its caller returned: the release work in flight (a
 * ROLLBACK or the discard of a broken connection after the caller got its error), each bounded
 * by the pool's own deadlines well below this.
 */
const RELEASE_SETTLE_MS = 1000;

/** Clients still checked out `RELEASE_SETTLE_MS` after every caller returned (each one is a leak), and how many were out at once. */
async function leakedAfterLoad(t: TestApp): Promise<{ held: number; outWhenLoadStopped: number }> {
  const outWhenLoadStopped = checkedOut(t);
  await waitFor('every client given back', () => checkedOut(t) === 0, RELEASE_SETTLE_MS, 10).catch(() => undefined);
  return { held: checkedOut(t), outWhenLoadStopped };
}

/** Failed requests by error name/SQLSTATE (transactions marked). */
function failureCodes(ops: readonly Op[]): Record<string, number> {
  const byCode: Record<string, number> = {};
  for (const o of ops) {
    if (o.ok) continue;
    const key = `${o.code ?? '?'}${o.transaction ? ' (db.transaction)' : ''}`;
    byCode[key] = (byCode[key] ?? 0) + 1;
  }
  return byCode;
}

function summarize(
  scenario: ScenarioName,
  ops: Op[],
  crashes: CrashCounter,
  heldAfterLoad: number,
  base: BaselineCheck,
  recoveryOf: string,
  recoveryMs: number | undefined,
  facts: Record<string, unknown>,
): ScenarioResult {
  const reads = ops.filter((o) => o.kind === 'read');
  const writes = ops.filter((o) => o.kind === 'write');
  const failuresByCode = failureCodes(ops);
  return {
    scenario,
    label: SCENARIO_LABEL[scenario],
    requests: ops.length,
    reads: reads.length,
    writes: writes.length,
    failedReads: reads.filter((o) => !o.ok).length,
    failedWrites: writes.filter((o) => !o.ok).length,
    failuresByCode,
    maxLatencyMs: ops.reduce((m, o) => Math.max(m, o.end - o.start), 0),
    recoveryOf,
    recoveryMs,
    leakedAfter: heldAfterLoad + base.leaked,
    crashes: crashes.count,
    baselineReached: base.reached,
    baselineMs: base.ms,
    ops,
    facts: { ...facts, heldAfterLoad, baselineDetail: base.detail, crashMessages: crashes.messages },
  };
}

/** Holds `count` primary clients until `release` resolves; resolves `held` once all are out. */
function holdPrimaryClients(db: DatabaseService, count: number, release: Promise<void>): { held: Promise<void>; done: Promise<unknown[]> } {
  let out = 0;
  let allOut!: () => void;
  const held = new Promise<void>((resolve) => (allOut = resolve));
  const done = Promise.allSettled(
    Array.from({ length: count }, () =>
      db.primary.withClient(async () => {
        if (++out === count) allOut();
        await release;
      }),
    ),
  );
  return { held, done };
}

async function scenarioReplicaKill(t: TestApp, load: Load, timing: ChaosTiming): Promise<{ recoveryMs: number | undefined; facts: Record<string, unknown> }> {
  const replica1 = t.cluster.replicas[0]!.node;
  await clusterCtl('node-kill', 'replica1');
  const killedAt = Date.now();
  await sleep(timing.disruptMs);
  try {
    await clusterCtl('node-start', 'replica1');
  } finally {
    await clusterCtl('start');
  }
  const upAt = Date.now();
  const readsBefore = replica1.counters.routedReads;
  const servedAgainAt = await waitFor('replica1 serving reads again', () => (replica1.counters.routedReads > readsBefore ? Date.now() : undefined), 15_000, 10).catch(() => undefined);
  await sleep(timing.afterMs);
  return { recoveryMs: servedAgainAt === undefined ? undefined : servedAgainAt - upAt, facts: { killedAt, upAt, servedAgainAt } };
}

async function scenarioPrimaryRestart(t: TestApp, load: Load, timing: ChaosTiming): Promise<{ recoveryMs: number | undefined; facts: Record<string, unknown> }> {
  let down = false;
  const accepted = firstAccept('primary', () => down, 60_000);
  const stopAt = Date.now();
  try {
    await clusterCtl('node-stop', 'primary', 'fast');
    down = true;
    const downAt = Date.now();
    await sleep(Math.min(timing.disruptMs, 1000));
    await clusterCtl('node-start', 'primary');
    const upAt = (await accepted) ?? Date.now();
    const firstWriteOk = await waitFor(
      'a successful write after the primary accepts again',
      () => load.ops.find((o) => o.kind === 'write' && o.ok && o.end >= upAt && o.start >= stopAt)?.end,
      10_000,
      5,
    ).catch(() => undefined);
    await sleep(timing.afterMs);
    const failedWrites = load.ops.filter((o) => o.kind === 'write' && !o.ok);
    return {
      recoveryMs: firstWriteOk === undefined ? undefined : Math.max(0, firstWriteOk - upAt),
      facts: {
        stopAt,
        downAt,
        upAt,
        firstWriteOk,
        firstFailedWriteStart: failedWrites[0]?.start,
        lastFailedWriteStart: failedWrites.at(-1)?.start,
        writesOkAfterRecovery: load.ops.filter((o) => o.kind === 'write' && o.ok && firstWriteOk !== undefined && o.start >= firstWriteOk).length,
      },
    };
  } finally {
    down = true;
    await clusterCtl('start');
  }
}

/** A failover as Patroni or a managed service does it; afterwards the cluster is rebuilt to its initial topology. */
async function scenarioPrimaryPromoted(load: Load, timing: ChaosTiming): Promise<{ recoveryMs: number | undefined; facts: Record<string, unknown> }> {
  try {
    await clusterCtl('node-stop', 'primary', 'immediate');
    const downAt = Date.now();
    await sleep(Math.min(timing.disruptMs, 1000));
    await clusterCtl('promote', 'replica1');
    const promotedAt = Date.now();
    // The primary is down from downAt: a write that started after it and succeeded was served by replica1.
    const firstWriteOk = await waitFor(
      'a successful write on the promoted replica1',
      () => load.ops.find((o) => o.kind === 'write' && o.ok && o.start >= downAt)?.end,
      10_000,
      5,
    ).catch(() => undefined);
    await sleep(timing.afterMs);
    // What the failover cost readers; the rebuild below (the harness restoring the initial topology
    // under the same load: a switchover back, replicas re-based) is not part of it.
    const rebuildAt = Date.now();
    const readsFailedInFailover = load.ops.filter((o) => o.kind === 'read' && !o.ok && o.start < rebuildAt);
    return {
      recoveryMs: firstWriteOk === undefined ? undefined : Math.max(0, firstWriteOk - promotedAt),
      facts: { downAt, promotedAt, firstWriteOk, rebuildAt, failedReadsInFailover: readsFailedInFailover.length, failedReadsInFailoverCodes: failureCodes(readsFailedInFailover) },
    };
  } finally {
    await clusterCtl('rebuild');
  }
}

async function scenarioTerminate(
  t: TestApp,
  timing: ChaosTiming,
  applicationName: string,
  onlyIdle: boolean,
): Promise<{ recoveryMs: number | undefined; facts: Record<string, unknown> }> {
  const terminated: number[] = [];
  const refillsBefore = nodesOf(t).reduce((n, node) => n + node.counters.refills, 0);
  const retriesBefore = nodesOf(t).reduce((n, node) => n + node.counters.staleRetries, 0);
  const pids = new Map<PgNodeName, number[]>(PG_NODES.map((node) => [node, []]));
  const firstAt = Date.now();
  let lastAt = 0;
  for (let round = 0; round < 2; round++) {
    if (round > 0) await sleep(timing.disruptMs / 2);
    const killed = await Promise.all(PG_NODES.map((node) => terminateSessionPids(node, applicationName, onlyIdle)));
    lastAt = Date.now();
    killed.forEach((list, i) => pids.get(PG_NODES[i]!)!.push(...list));
    terminated.push(killed.reduce((a, b) => a + b.length, 0));
  }
  // Recovered when every pool has taken out (a `remove` event each) at least as many connections
  // as were terminated on its server, so it went below min, and is back at min since.
  const removals = (node: NodePool) => t.events.filter((e) => e.type === 'remove' && e.node === node.name && e.at >= firstAt).length;
  const recovered = () => nodesOf(t).every((node) => removals(node) >= pids.get(SERVER_OF[node.name]!)!.length && node.pool.totalCount >= node.config.min);
  const backAt = await waitFor('every pool below min, then back at min', () => (recovered() ? Date.now() : undefined), 10_000, 5).catch(() => undefined);
  // …with new server sessions: none of the terminated backends is left, and each node has min of its own.
  const validated = await waitFor(
    'every terminated backend gone and min new sessions on each node',
    async () => {
      for (const node of nodesOf(t)) {
        const server = SERVER_OF[node.name]!;
        const live = (await poolSessions(server, applicationName)).map((r) => r.pid);
        if (live.some((pid) => pids.get(server)!.includes(pid)) || live.length < node.config.min) return false;
      }
      return true;
    },
    5000,
    50,
  ).catch(() => false);
  await sleep(timing.afterMs);
  return {
    recoveryMs: backAt === undefined ? undefined : Math.max(0, backAt - lastAt),
    facts: {
      terminated,
      validated,
      refills: nodesOf(t).reduce((n, node) => n + node.counters.refills, 0) - refillsBefore,
      staleRetries: nodesOf(t).reduce((n, node) => n + node.counters.staleRetries, 0) - retriesBefore,
    },
  };
}

async function scenarioLeak(t: TestApp, _load: Load, timing: ChaosTiming): Promise<{ recoveryMs: number | undefined; facts: Record<string, unknown> }> {
  const primary = t.cluster.primary;
  const leaksBefore = primary.counters.leaks;
  const warningsBefore = t.logger.warnings('Possible connection leak on').length;
  const returnedBefore = t.logger.warnings('Previously reported leaked client of').length;
  const eventsBefore = t.events.filter((e) => e.type === 'leak').length;
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  const hold = holdPrimaryClients(t.db, 2, released);
  await within('2 clients held', 5000, hold.held);
  await sleep(CHAOS_POOL.leakDetectionThresholdMs + Math.max(500, timing.disruptMs / 2));
  const leaksWhileHeld = primary.counters.leaks - leaksBefore;
  const releasedAt = Date.now();
  release();
  await within('held clients returned', 5000, hold.done);
  const returnedLogs = await waitFor('returned-leak log lines', () => {
    const n = t.logger.warnings('Previously reported leaked client of').length - returnedBefore;
    return n >= 2 ? n : undefined;
  }, 3000).catch(() => t.logger.warnings('Previously reported leaked client of').length - returnedBefore);
  await sleep(timing.afterMs);
  const leakWarnings = t.logger.warnings('Possible connection leak on').slice(warningsBefore);
  return {
    recoveryMs: undefined,
    facts: {
      held: 2,
      leaksWhileHeld,
      leakEvents: t.events.filter((e) => e.type === 'leak').length - eventsBefore,
      leakWarnings: leakWarnings.length,
      leakWarningHasStack: leakWarnings.every((w) => w.includes('Acquired at:') && w.includes('chaos.driver.ts')),
      returnedLogs,
      releasedAt,
    },
  };
}

async function scenarioExhaust(t: TestApp, load: Load, timing: ChaosTiming): Promise<{ recoveryMs: number | undefined; facts: Record<string, unknown> }> {
  const max = t.cluster.primary.config.max;
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  const hold = holdPrimaryClients(t.db, max, released);
  let callers: PromiseSettledResult<unknown>[] = [];
  let callerMs: number[] = [];
  const exhaustedAt = Date.now();
  try {
    await within(`all ${max} primary clients held`, 10_000, hold.held);
    const bound = CHAOS_POOL.acquireTimeoutMs + 3000;
    const started = Date.now();
    callers = await within(
      'every waiting caller to settle',
      bound,
      Promise.allSettled(
        Array.from({ length: 8 }, async () => {
          try {
            return await t.db.query('SELECT 1');
          } finally {
            callerMs.push(Date.now() - started);
          }
        }),
      ),
    );
    await sleep(Math.max(0, timing.disruptMs - (Date.now() - started)));
  } finally {
    release();
  }
  const releasedAt = Date.now();
  await within('held clients returned', 5000, hold.done);
  const firstWriteOk = await waitFor('a write after the pool is released', () => load.ops.find((o) => o.kind === 'write' && o.ok && o.start >= releasedAt)?.end, 5000, 5).catch(() => undefined);
  await sleep(timing.afterMs);
  const timeouts = callers.filter((r) => r.status === 'rejected' && r.reason instanceof PoolAcquireTimeoutError).length;
  const writesDuring = load.ops.filter((o) => o.kind === 'write' && o.start >= exhaustedAt && o.start < releasedAt);
  callerMs = callerMs.sort((a, b) => a - b);
  return {
    recoveryMs: firstWriteOk === undefined ? undefined : Math.max(0, firstWriteOk - releasedAt),
    facts: {
      callers: callers.length,
      timeouts,
      slowestCallerMs: callerMs.at(-1),
      loadWritesFailedDuring: writesDuring.filter((o) => !o.ok).length,
      loadWriteFailureCodes: [...new Set(writesDuring.filter((o) => !o.ok).map((o) => o.code))],
      exhaustedAt,
      releasedAt,
    },
  };
}

/** Completed reads per second among `ops` that ended in [from, to). */
function readRate(ops: Op[], from: number, to: number): number {
  const n = ops.filter((o) => o.kind === 'read' && o.ok && o.end >= from && o.end < to).length;
  return to > from ? (n * 1000) / (to - from) : 0;
}

async function scenarioReplicaFreeze(t: TestApp, load: Load, timing: ChaosTiming): Promise<{ recoveryMs: number | undefined; facts: Record<string, unknown> }> {
  const replica1 = t.cluster.replicas[0]!;
  const thaw = freezeNode('replica1');
  const frozenAt = Date.now();
  let thawedAt = frozenAt;
  let outOfRotationAt: number | undefined;
  try {
    outOfRotationAt = await waitFor('replica1 out of rotation', () => (replica1.bannedUntil !== 0 ? Date.now() : undefined), timing.freezeMs, 10).catch(() => undefined);
    await sleep(Math.max(0, timing.freezeMs - (Date.now() - frozenAt)));
  } finally {
    thaw();
    thawedAt = Date.now();
  }
  const readsBefore = replica1.node.counters.routedReads;
  const servedAgainAt = await waitFor('replica1 serving reads again', () => (replica1.node.counters.routedReads > readsBefore ? Date.now() : undefined), 15_000, 10).catch(() => undefined);
  await sleep(timing.afterMs);
  const readsDuring = load.ops.filter((o) => o.kind === 'read' && o.start >= frozenAt && o.start < thawedAt);
  return {
    recoveryMs: servedAgainAt === undefined ? undefined : servedAgainAt - thawedAt,
    facts: {
      frozenAt,
      thawedAt,
      outOfRotationMs: outOfRotationAt === undefined ? undefined : outOfRotationAt - frozenAt,
      readsPerSecondBefore: readRate(load.ops, frozenAt - timing.warmMs, frozenAt),
      readsPerSecondDuring: readRate(load.ops, frozenAt, thawedAt),
      slowestReadMs: load.ops.filter((o) => o.kind === 'read').reduce((m, o) => Math.max(m, o.end - o.start), 0),
      failedReadsDuring: readsDuring.filter((o) => !o.ok).length,
      servedAgainAt,
    },
  };
}

async function scenarioPrimaryFreeze(t: TestApp, load: Load, timing: ChaosTiming): Promise<{ recoveryMs: number | undefined; facts: Record<string, unknown> }> {
  const thaw = freezeNode('primary');
  const frozenAt = Date.now();
  let thawedAt = frozenAt;
  try {
    await sleep(timing.freezeMs);
  } finally {
    thaw();
    thawedAt = Date.now();
  }
  const firstWriteOk = await waitFor('a write that started after the thaw succeeds', () => load.ops.find((o) => o.kind === 'write' && o.ok && o.start >= thawedAt)?.end, 10_000, 5).catch(() => undefined);
  await sleep(timing.afterMs);
  const writesDuring = load.ops.filter((o) => o.kind === 'write' && o.end >= frozenAt && o.start < thawedAt);
  const readsDuring = load.ops.filter((o) => o.kind === 'read' && o.start >= frozenAt && o.end < thawedAt);
  return {
    recoveryMs: firstWriteOk === undefined ? undefined : Math.max(0, firstWriteOk - thawedAt),
    facts: {
      frozenAt,
      thawedAt,
      writesDuring: writesDuring.length,
      failedWritesDuring: writesDuring.filter((o) => !o.ok).length,
      slowestWriteMs: load.ops.filter((o) => o.kind === 'write').reduce((m, o) => Math.max(m, o.end - o.start), 0),
      readsOkDuring: readsDuring.filter((o) => o.ok).length,
      failedReadsDuring: readsDuring.filter((o) => !o.ok).length,
      firstWriteOkAfterThawMs: firstWriteOk === undefined ? undefined : firstWriteOk - thawedAt,
    },
  };
}

const RECOVERY_OF: Record<ScenarioName, string> = {
  'replica-freeze': 'SIGCONT → replica1 serves reads again',
  'primary-freeze': 'SIGCONT → first successful write that started after it',
  'replica-kill': 'replica1 accepts again → it serves reads again',
  'primary-restart': 'primary accepts again → first successful write',
  'terminate-all': 'last termination → every pool took its terminated connections out and is back at min (new server sessions checked)',
  'terminate-busy': 'last termination → every pool took its terminated connections out and is back at min (new server sessions checked)',
  leak: '—',
  exhaust: 'held clients released → first successful write',
  'primary-promoted':
    'pg_ctl promote replica1 finished → first successful write (on replica1); the row also counts the requests made while the harness rebuilds the initial topology afterwards (a switchover back, replicas re-based)',
};

/** Runs the scenarios in order against the real cluster; always leaves every node up and both replicas streaming. */
export async function runChaos(options: ChaosOptions): Promise<ChaosRun> {
  const { applicationName, timing } = options;
  const log = options.log ?? (() => undefined);
  const scenarios = options.scenarios ?? SCENARIOS;
  const startedAt = new Date();
  await clusterCtl('start');
  await adminQuery('primary', `CREATE TABLE IF NOT EXISTS ${TABLE} (id bigserial PRIMARY KEY, scenario text NOT NULL, worker int NOT NULL, at timestamptz NOT NULL DEFAULT now())`, [], { as: 'app' });
  await adminQuery('primary', `TRUNCATE ${TABLE}`, [], { as: 'app' });
  const t = await startApp({
    preset: 'test',
    applicationName,
    primary: nodeOptions('primary'),
    replicas: replicaOptions(),
    min: CHAOS_POOL.min,
    max: CHAOS_POOL.max,
    acquireTimeoutMs: options.pool?.acquireTimeoutMs ?? CHAOS_POOL.acquireTimeoutMs,
    idleTimeoutMs: CHAOS_POOL.idleTimeoutMs,
    leakDetectionThresholdMs: CHAOS_POOL.leakDetectionThresholdMs,
    routing: { replicaBanMs: CHAOS_POOL.replicaBanMs },
    ...(options.pool?.holdWritesMs !== undefined ? { failover: { holdWritesMs: options.pool.holdWritesMs } } : {}),
  });
  const results: ScenarioResult[] = [];
  try {
    const initial = await waitForBaseline(t, applicationName, timing.baselineTimeoutMs);
    if (!initial.reached) throw new Error(`The chaos application did not reach its baseline before the first scenario: ${initial.detail}`);
    for (const scenario of scenarios) {
      log(`chaos: ${SCENARIO_LABEL[scenario]} …`);
      const crashes: CrashCounter = { count: 0, messages: [] };
      const load = new Load(t.db, timing, scenario);
      const outcome = await countingCrashes(crashes, async () => {
        load.start();
        try {
          await sleep(timing.warmMs);
          if (scenario === 'replica-kill') return await scenarioReplicaKill(t, load, timing);
          if (scenario === 'primary-restart') return await scenarioPrimaryRestart(t, load, timing);
          if (scenario === 'terminate-all') return await scenarioTerminate(t, timing, applicationName, true);
          if (scenario === 'terminate-busy') return await scenarioTerminate(t, timing, applicationName, false);
          if (scenario === 'leak') return await scenarioLeak(t, load, timing);
          if (scenario === 'replica-freeze') return await scenarioReplicaFreeze(t, load, timing);
          if (scenario === 'primary-freeze') return await scenarioPrimaryFreeze(t, load, timing);
          if (scenario === 'primary-promoted') return await scenarioPrimaryPromoted(load, timing);
          return await scenarioExhaust(t, load, timing);
        } finally {
          await load.stop();
        }
      });
      const afterLoad = await leakedAfterLoad(t);
      const base = await waitForBaseline(t, applicationName, timing.baselineTimeoutMs);
      const facts = { ...outcome.facts, clientsOutWhenLoadStopped: afterLoad.outWhenLoadStopped, readFailures: failureCodes(load.ops.filter((o) => o.kind === 'read')) };
      const result = summarize(scenario, load.ops, crashes, afterLoad.held, base, RECOVERY_OF[scenario], outcome.recoveryMs, facts);
      results.push(result);
      log(`chaos: ${scenario}: ${result.requests} requests, ${result.failedReads} failed reads, ${result.failedWrites} failed writes, recovery ${result.recoveryMs ?? '—'} ms, baseline ${base.reached ? `after ${base.ms} ms` : `NOT reached (${base.detail})`}`);
    }
  } finally {
    await t.close();
    await clusterCtl('start');
  }
  const sessionsLeftAfterClose = await sessionsLeftAfter(applicationName, 5000);
  return { applicationName, timing, startedAt, durationMs: Date.now() - startedAt.getTime(), results, sessionsLeftAfterClose };
}

function ms(value: number | undefined): string {
  return value === undefined ? '—' : `${Math.round(value)} ms`;
}

/** The chaos table in Markdown. */
export function renderTable(run: ChaosRun): string {
  const header = '| scenario | requests | failed reads | failed writes | max latency | recovery | leaked clients after | crashes |';
  const rule = '|---|---:|---:|---:|---:|---:|---:|---:|';
  const rows = run.results.map(
    (r) => `| ${r.label} | ${r.requests} | ${r.failedReads} | ${r.failedWrites} | ${ms(r.maxLatencyMs)} | ${ms(r.recoveryMs)} | ${r.leakedAfter} | ${r.crashes} |`,
  );
  return [header, rule, ...rows].join('\n');
}

/** Per-scenario notes: what the recovery column measures and which errors callers saw. */
export function renderNotes(run: ChaosRun): string {
  return run.results
    .map((r) => {
      const failures = Object.entries(r.failuresByCode)
        .sort((a, b) => b[1] - a[1])
        .map(([code, n]) => `${code} ×${n}`)
        .join(', ');
      const reads = Object.entries((r.facts.readFailures ?? {}) as Record<string, number>)
        .sort((a, b) => b[1] - a[1])
        .map(([code, n]) => `${code} ×${n}`)
        .join(', ');
      return `- **${r.label}** — recovery: ${r.recoveryOf}. Errors callers saw: ${failures || 'none'}${reads ? ` (reads: ${reads})` : ''}. Back to baseline after ${r.baselineMs} ms.`;
    })
    .join('\n');
}
