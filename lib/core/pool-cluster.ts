import { Logger } from '@nestjs/common';
import type { PoolClient, QueryResult, QueryResultRow } from 'pg';
import { Subject, type Observable } from 'rxjs';
import type { ResolvedOptions } from '../config/resolve-options.js';
import { scrubSecrets } from '../config/redact.js';
import { NoReplicaAvailableError, PoolError, ReadOnlyInTransactionError, TransactionInProgressError } from '../pool.exceptions.js';
import type { PoolEvent } from '../pool.events.js';
import type { ReplicaCandidate, TransactionOptions } from '../pool.interfaces.js';
import { watchLent } from '../transactions/pinned-client.js';
import type { TransactionHandle } from '../transactions/pinned-transaction.js';
import { TransactionRunner } from '../transactions/transaction-runner.js';
import { DEFAULT_DATABASE } from '../pool.constants.js';
import {
  formatConsistencyToken,
  formatLsn,
  markWrite,
  parseLsn,
  routingStorage,
  type PinnedTransaction,
  type RoutingScope,
  type RoutingSession,
} from '../routing/routing-context.js';
import { START_UP, Topology } from '../cluster/topology.js';
import { NodeMonitor } from '../cluster/node-monitor.js';
import { NodeHungError } from '../pool.exceptions.js';
import { isConnectionError, isReadOnlyViolation, neverSent } from './errors.js';
import { NodePool, type NodeHost, type QueryInput } from './node-pool.js';

/** What routing knows about one replica. */
export class ReplicaState {
  /** `0` when in rotation; else when the next probe runs (the ban lasts until a probe succeeds). */
  bannedUntil = 0;
  banReason = '';
  /** Replication lag in ms: `0` when the replica replayed the primary's last known position. */
  lagMs: number | undefined = undefined;
  /** WAL bytes the replica's replay is behind the primary's last known position. */
  lagBytes: number | undefined = undefined;
  replayLsn: bigint | undefined = undefined;
  lastCheckedAt = 0;
  /** Smooth weighted round-robin accumulator. */
  current = 0;
  probe: NodeJS.Timeout | undefined;
  /** An in-flight read-your-writes check of the replay position. */
  refreshing: Promise<void> | undefined;
  /** A lag figure older than this (ms) is reported as unknown. */
  staleAfterMs = Infinity;
  constructor(readonly node: NodePool) {}

  /** `lagMs` while it is fresh (measured within `staleAfterMs`), else `undefined`: an old figure is unknown, not 0. */
  get reportedLagMs(): number | undefined {
    return Date.now() - this.lastCheckedAt > this.staleAfterMs ? undefined : this.lagMs;
  }
}

const LAG_SQL =
  'SELECT pg_last_wal_replay_lsn()::text AS replay, pg_is_in_recovery() AS recovering, ' +
  'EXTRACT(EPOCH FROM (clock_timestamp() - pg_last_xact_replay_timestamp())) * 1000 AS since_ms';
const REPLAY_SQL = 'SELECT pg_last_wal_replay_lsn()::text AS replay';
/**
 * Read-your-writes: the insert position, which covers every record made so far, commits included
 * (the write position does not while `synchronous_commit` is off).
 */
const PRIMARY_LSN_SQL = 'SELECT pg_current_wal_insert_lsn()::text AS lsn';
/** Lag monitor: the flushed position, the most a replica can have received. */
const PRIMARY_FLUSH_LSN_SQL = 'SELECT pg_current_wal_flush_lsn()::text AS lsn';
const WAL_HISTORY_MAX = 600;
/** Command tags of statements that write nothing; any other statement that fell back to the primary counts as a write. */
const READ_TAGS = new Set(['SELECT', 'SHOW', 'FETCH', 'MOVE']);
const REFRESH_TIMEOUT_MS = 1000;

interface WalMark {
  readonly lsn: bigint;
  /** When the primary was first and last seen at exactly this position. */
  readonly firstSeen: number;
  lastSeen: number;
}

/**
 * The primary's flushed WAL position over time, as sampled by the lag monitor.
 * It dates a replica's replay position: the WAL after it was written after the last time the
 * primary was seen at or before it, and before the first time it was seen past it.
 */
export class WalHistory {
  readonly #marks: WalMark[] = [];
  constructor(private readonly keepMs: number) {}

  get latest(): bigint | undefined {
    return this.#marks[this.#marks.length - 1]?.lsn;
  }

  record(lsn: bigint, at: number): void {
    const marks = this.#marks;
    const last = marks[marks.length - 1];
    if (last !== undefined && lsn === last.lsn) {
      if (at > last.lastSeen) last.lastSeen = at;
      return;
    }
    if (last !== undefined && lsn < last.lsn) {
      // An older position than already seen: a stale answer, or a new primary after a failover.
      if (at - last.lastSeen < 1000) return;
      marks.length = 0;
    }
    marks.push({ lsn, firstSeen: at, lastSeen: at });
    while (marks.length > 2 && (marks.length > WAL_HISTORY_MAX || marks[1]!.lastSeen < at - this.keepMs)) marks.shift();
  }

  /**
   * Estimated age in ms of the oldest WAL the replica at `replay` has not replayed, at `now`
   * (`0` when caught up). The WAL past `replay` was written after the last time the primary was
   * seen at or before `replay`, and after the last transaction the replica replayed (`sinceMs`
   * ago): the smaller of the two is the estimate. When the history does not reach back that far,
   * the time since the primary was first seen past `replay` (a lower bound) is used: right after
   * start-up, an idle database's old replay timestamp must not make a healthy replica look hours behind.
   */
  lagMs(replay: bigint, sinceMs: number | undefined, now: number): number {
    const marks = this.#marks;
    if (marks.length === 0 || replay >= marks[marks.length - 1]!.lsn) return 0;
    let i = marks.length - 1;
    while (i > 0 && marks[i - 1]!.lsn > replay) i--;
    const lower = Math.max(0, now - marks[i]!.firstSeen);
    if (i === 0) return lower;
    let upper = Math.max(0, now - marks[i - 1]!.lastSeen);
    if (sinceMs !== undefined && sinceMs >= 0 && sinceMs < upper) upper = sinceMs;
    return Math.max(lower, upper);
  }
}

/**
 * All pools of one database (primary + replicas) and the routing between them: scope-aware
 * node choice, replica bans with background probes, lag monitoring, read-your-writes and
 * pinned transactions.
 */
export class PoolCluster implements NodeHost {
  readonly logger: Logger;
  readonly #events = new Subject<PoolEvent>();
  readonly events$: Observable<PoolEvent> = this.#events.asObservable();
  readonly #wal: WalHistory;
  #rr = 0;
  #lagTimer: NodeJS.Timeout | undefined;
  #lagRunning = false;
  #closed = false;
  readonly #transactions = new TransactionRunner(this);
  readonly #monitor: NodeMonitor | undefined;

  constructor(readonly options: ResolvedOptions) {
    this.logger = new Logger(`PoolModule:${options.database}`);
    const primary = new NodePool(options.primary, this);
    const replicas = options.replicas.map((r) => new NodePool(r, this));
    this.#states = [primary, ...replicas].map((n) => new ReplicaState(n));
    this.#replicas = this.#states.slice(1);
    this.topology = new Topology(primary, replicas, options.failover, this);
    const routing = options.routing;
    this.#wal = new WalHistory(Math.max(60_000, routing.maxReplicationLagMs * 3, routing.lagCheckIntervalMs * 10));
    for (const r of this.#states) r.staleAfterMs = routing.lagCheckIntervalMs * 2 + this.#checkTimeoutMs();
    if (options.monitor.enabled) {
      this.#monitor = new NodeMonitor(this.nodes, options.monitor, { hung: (node, reason) => this.#onHung(node, reason), answering: (node) => this.#onAnswering(node) });
      this.#monitor.start();
    }
  }

  get name(): string {
    return this.options.database;
  }

  get nodes(): NodePool[] {
    return this.#states.map((r) => r.node);
  }

  // Topology: the write node and the readers follow the role checks (lib/cluster/topology.ts) --
  readonly topology: Topology;
  /** Routing state of every configured node, in configuration order. */
  readonly #states: readonly ReplicaState[];
  #replicas: readonly ReplicaState[];

  /** The node that takes the writes now (a promoted replica after a failover). */
  get primary(): NodePool {
    return this.topology.writer;
  }

  /** The nodes in read rotation now: those the role checks found in recovery. */
  get replicas(): readonly ReplicaState[] {
    return this.#replicas;
  }

  topologyChanged(): void {
    const before = this.#replicas;
    this.#replicas = this.#states.filter((s) => this.topology.isReader(s.node));
    for (const r of this.#replicas) {
      if (before.includes(r)) continue;
      // A node joining the readers has no lag figure against the current primary yet: unknown, measured now.
      r.lagMs = undefined;
      r.lagBytes = undefined;
      r.replayLsn = undefined;
    }
    if (this.#replicas.length > 0) {
      this.startLagMonitor();
      void this.checkLag();
    }
  }

  log(message: string): void {
    this.logger.log(this.scrub(message));
  }

  idle(): boolean {
    return this.options.lazy && this.nodes.every((n) => n.pool.totalCount === 0);
  }

  /** A write's failure that may mean the write node changed: the roles are checked at once. */
  #writeFailed(err: unknown): void {
    if (isConnectionError(err)) void this.topology.check('connection loss of the write node');
    else if (isReadOnlyViolation(err)) void this.topology.check('25006 from the write node');
  }

  #watchWrite<R extends QueryResultRow>(promise: Promise<QueryResult<R>>): Promise<QueryResult<R>> {
    if (!this.topology.discovering) return promise;
    return promise.catch((err: unknown) => {
      this.#writeFailed(err);
      throw err;
    });
  }
  // ---------------------------------------------------------------------------------------------

  // NodeHost ---------------------------------------------------------------------------
  get slowQueryMs() {
    return this.options.slowQueryMs;
  }
  get retryAttempts() {
    return this.options.retryAttempts;
  }
  get retryDelayMs() {
    return this.options.retryDelayMs;
  }
  get breaker() {
    return this.options.breaker;
  }
  get emitting(): boolean {
    return this.#events.observed;
  }
  emit(event: PoolEvent): void {
    this.#events.next(event);
  }
  warn(message: string): void {
    this.logger.warn(this.scrub(message));
  }
  scrub(message: string): string {
    return scrubSecrets(message, this.options.secrets);
  }
  statementTimedOut(node: NodePool): void {
    this.#monitor?.suspect(node);
  }
  async initClient(client: PoolClient, node: NodePool): Promise<void> {
    const hook = this.options.onConnect;
    if (hook) await hook(client, { database: this.name, pool: node.name, role: node.role });
  }

  // Routing ----------------------------------------------------------------------------
  /** Runs a statement where the current scope says: pinned transaction, replica or primary. */
  query<R extends QueryResultRow = any>(text: QueryInput, values?: unknown[]): Promise<QueryResult<R>> {
    const scope = routingStorage.getStore();
    if (scope !== undefined) {
      if (scope.tx !== undefined) {
        const tx = scope.tx.get(this.name);
        if (tx !== undefined) return this.#inTransaction<R>(tx, scope, text, values);
      }
      if (scope.readOnly) return this.read<R>(scope, text, values);
    }
    return this.write<R>(scope, text, values);
  }

  /** `db.primary.query`: the scope's pinned transaction when there is one, else a primary client. */
  primaryQuery<R extends QueryResultRow = any>(text: QueryInput, values?: unknown[]): Promise<QueryResult<R>> {
    const scope = routingStorage.getStore();
    const tx = scope?.tx?.get(this.name);
    if (tx !== undefined) return tx.query<R>(text, values);
    return this.write<R>(scope, text, values);
  }

  /** `db.replica.query`: a usable replica (bans, lag, retry and fallback apply), ignoring the scope. */
  replicaQuery<R extends QueryResultRow = any>(text: QueryInput, values?: unknown[]): Promise<QueryResult<R>> {
    return this.#readAt<R>(undefined, text, values);
  }

  /**
   * Runs a statement on the primary and remembers the write for read-your-writes once it settled,
   * unless it was refused before it reached the server (open breaker, acquire timeout, connect failure).
   */
  write<R extends QueryResultRow = any>(scope: RoutingScope | undefined, text: QueryInput, values?: unknown[]): Promise<QueryResult<R>> {
    let node: NodePool;
    try {
      node = this.topology.writable();
    } catch (err) {
      return Promise.reject(err);
    }
    node.counters.routedWrites++;
    if (scope === undefined || this.options.routing.consistency !== 'read-your-writes') return this.#watchWrite(node.query<R>(text, values));
    return this.#watchWrite(node.query<R>(text, values)).then(
      (res) => {
        markWrite(scope, this.name);
        return res;
      },
      (err: unknown) => {
        if (!neverSent(err)) markWrite(scope, this.name);
        throw err;
      },
    );
  }

  /** Runs a read on a usable replica (retrying once elsewhere on a connection error), else the primary. */
  read<R extends QueryResultRow = any>(scope: RoutingScope | undefined, text: QueryInput, values?: unknown[]): Promise<QueryResult<R>> {
    const required = this.#requiredLsn(scope);
    if (required !== undefined && typeof required !== 'bigint') {
      return required.then((lsn) => this.#readAt<R>(lsn, text, values));
    }
    return this.#readAt<R>(required, text, values);
  }

  #readAt<R extends QueryResultRow>(required: bigint | undefined, text: QueryInput, values: unknown[] | undefined): Promise<QueryResult<R>> {
    const first = this.pickReplica(required, undefined);
    if (first === undefined) {
      if (required !== undefined && this.#refreshable(required)) {
        return this.#refreshReplay(required).then(() => this.#readOn<R>(this.pickReplica(required, undefined), required, text, values));
      }
      return this.#onPrimary<R>(required, text, values, undefined);
    }
    return this.#readOn<R>(first, required, text, values);
  }

  #readOn<R extends QueryResultRow>(replica: ReplicaState | undefined, required: bigint | undefined, text: QueryInput, values: unknown[] | undefined): Promise<QueryResult<R>> {
    if (replica === undefined) return this.#onPrimary<R>(required, text, values, undefined);
    replica.node.counters.routedReads++;
    return replica.node.query<R>(text, values).catch((err: unknown) => this.#retryRead<R>(err, replica, required, text, values));
  }

  /** True when a replica is in rotation and only its last known replay position keeps it from serving `required`. */
  #refreshable(required: bigint): boolean {
    const now = Date.now();
    return this.replicas.some((r) => (r.replayLsn === undefined || r.replayLsn < required) && this.usable(r, undefined, now));
  }

  /**
   * The cheap check of read-your-writes: asks the replicas that look behind `required` for their
   * replay position now (one `SELECT` each, shared by concurrent reads) instead of sending the
   * read to the primary on the lag monitor's older figure.
   */
  #refreshReplay(required: bigint): Promise<void> {
    const now = Date.now();
    const checks: Promise<void>[] = [];
    for (const r of this.replicas) {
      if ((r.replayLsn !== undefined && r.replayLsn >= required) || !this.usable(r, undefined, now)) continue;
      r.refreshing ??= r.node.systemQuery<{ replay: string | null }>(REPLAY_SQL, undefined, REFRESH_TIMEOUT_MS)
        .then(
          (res) => {
            const replay = parseLsn(res.rows[0]?.replay);
            if (replay !== undefined && (r.replayLsn === undefined || replay > r.replayLsn)) r.replayLsn = replay;
          },
          () => undefined,
        )
        .finally(() => {
          r.refreshing = undefined;
        });
      checks.push(r.refreshing);
    }
    return Promise.all(checks).then(() => undefined);
  }

  /** After a connection-class failure on `failed`: one more replica, then the primary. */
  async #retryRead<R extends QueryResultRow>(
    err: unknown,
    failed: ReplicaState,
    required: bigint | undefined,
    text: QueryInput,
    values: unknown[] | undefined,
  ): Promise<QueryResult<R>> {
    if (!isConnectionError(err)) throw this.#explain(err, failed.node);
    this.ban(failed, err);
    const next = this.pickReplica(required, failed);
    if (next === undefined) return this.#onPrimary<R>(required, text, values, err);
    next.node.counters.retries++;
    next.node.counters.routedReads++;
    try {
      return await next.node.query<R>(text, values);
    } catch (err2) {
      if (!isConnectionError(err2)) throw this.#explain(err2, next.node);
      this.ban(next, err2);
      return this.#onPrimary<R>(required, text, values, err2);
    }
  }

  /** A read no replica can serve: on the primary when allowed, else `NoReplicaAvailableError`. */
  #onPrimary<R extends QueryResultRow>(required: bigint | undefined, text: QueryInput, values: unknown[] | undefined, failure: unknown): Promise<QueryResult<R>> {
    const counters = this.primary.counters;
    if (this.replicas.length !== 0) {
      if (!this.#mayUsePrimary(required)) return Promise.reject(this.#noReplica(required, failure));
      counters.fallbacks++;
      if (failure !== undefined) counters.retries++;
    } else if (!this.options.routing.fallbackToPrimary) {
      return Promise.reject(new NoReplicaAvailableError(this.name, this.#unusableDetail(required)));
    }
    counters.routedReads++;
    const scope = routingStorage.getStore();
    if (scope === undefined || this.options.routing.consistency !== 'read-your-writes') return this.primary.query<R>(text, values);
    // A write sent as a read (a forgotten @ReadOnly()) succeeds here: it counts for read-your-writes.
    return this.primary.query<R>(text, values).then(
      (res) => {
        if (!READ_TAGS.has((res as { command?: string }).command as string)) markWrite(scope, this.name);
        return res;
      },
      (err: unknown) => {
        if (isConnectionError(err) && !neverSent(err)) markWrite(scope, this.name);
        throw err;
      },
    );
  }

  #noReplica(required: bigint | undefined, failure: unknown): NoReplicaAvailableError {
    const err = new NoReplicaAvailableError(this.name, this.#unusableDetail(required));
    if (failure !== undefined) Object.defineProperty(err, 'cause', { value: failure, configurable: true, writable: true });
    return err;
  }

  /**
   * `fallbackToPrimary`, or a read-your-writes read that a live replica cannot serve yet only
   * because it has not replayed the write: consistency then beats `fallbackToPrimary: false`.
   */
  #mayUsePrimary(required: bigint | undefined): boolean {
    if (this.options.routing.fallbackToPrimary) return true;
    if (required === undefined) return false;
    const now = Date.now();
    return this.replicas.some((r) => this.usable(r, undefined, now));
  }

  #explain(err: unknown, node: NodePool): unknown {
    if (isReadOnlyViolation(err) && err instanceof Error && !err.message.includes('read replica')) {
      err.message +=
        ` — Cannot write on read replica "${this.name}/${node.name}" because the statement ran in a @ReadOnly() scope, ` +
        'withClient({ readOnly: true }) or db.replica, and replicas only accept reads; nothing was written. ' +
        'Please make sure that methods which write are not decorated with @ReadOnly(), or send the statement through db.primary.';
    }
    return err;
  }

  /** The error (or `undefined`) for read-only work inside `tx`, per `routing.readOnlyInTransaction`. */
  #readOnlyInTransaction(tx: PinnedTransaction): ReadOnlyInTransactionError | undefined {
    if (tx.readOnly) return undefined;
    const mode = this.options.routing.readOnlyInTransaction;
    if (mode === 'throw') return new ReadOnlyInTransactionError(this.name);
    if (mode === 'warn' && !tx.warned) {
      tx.warned = true;
      this.logger.warn(
        `A @ReadOnly() scope ran inside a transaction on "${this.name}"; it uses the transaction's primary client, not a replica. ` +
          'Set routing.readOnlyInTransaction to "join" to silence this, or "throw" to forbid it.',
      );
    }
    return undefined;
  }

  #inTransaction<R extends QueryResultRow>(tx: PinnedTransaction, scope: RoutingScope, text: QueryInput, values?: unknown[]): Promise<QueryResult<R>> {
    if (scope.readOnly && tx.state === 'open') {
      const refused = this.#readOnlyInTransaction(tx);
      if (refused !== undefined) return Promise.reject(refused);
    }
    return tx.query<R>(text, values);
  }

  /** The WAL position reads of this scope must see (`undefined`: any), resolving a pending write lazily. */
  #requiredLsn(scope: RoutingScope | undefined): bigint | undefined | Promise<bigint | undefined> {
    if (scope === undefined || this.replicas.length === 0) return undefined;
    return this.#sessionLsn(scope.session, true);
  }

  /**
   * The highest of: the carried token for this database, and the primary position after the
   * session's writes. With `bestEffort` (a read), a primary that cannot tell its position does not
   * fail the read: see `#unverifiedLsn`.
   */
  #sessionLsn(session: RoutingSession, bestEffort: boolean): bigint | undefined | Promise<bigint | undefined> {
    const carried = session.minLsn?.get(this.name);
    const version = session.writes?.get(this.name);
    const seen = session.seen?.get(this.name);
    if (version !== undefined && (seen === undefined || seen.version < version)) {
      const fetched = this.#currentPrimaryLsn().then((lsn) => {
        const latest = session.seen?.get(this.name);
        const written = latest !== undefined && latest.lsn > lsn ? latest.lsn : lsn;
        (session.seen ??= new Map()).set(this.name, { version: latest !== undefined && latest.version > version ? latest.version : version, lsn: written });
        return carried !== undefined && carried > written ? carried : written;
      });
      if (!bestEffort) return fetched;
      return fetched.catch(() => {
        const known = session.seen?.get(this.name)?.lsn;
        return this.#unverifiedLsn(carried !== undefined && (known === undefined || carried > known) ? carried : known);
      });
    }
    if (seen === undefined) return carried;
    return carried !== undefined && carried > seen.lsn ? carried : seen.lsn;
  }

  /**
   * The primary's position could not be fetched (down, unreachable, no connection in time): the read
   * asks for the highest position the session knows when a usable replica has reached it, else for
   * the position of the usable replica that replayed the most. Counted in the primary's `rywUnverified`.
   */
  #unverifiedLsn(known: bigint | undefined): bigint | undefined {
    this.primary.counters.rywUnverified++;
    const now = Date.now();
    let furthest: bigint | undefined;
    for (const r of this.replicas) {
      if (r.replayLsn === undefined || !this.usable(r, undefined, now)) continue;
      if (known !== undefined && r.replayLsn >= known) return known;
      if (furthest === undefined || r.replayLsn > furthest) furthest = r.replayLsn;
    }
    return furthest;
  }

  async #currentPrimaryLsn(): Promise<bigint> {
    const res = await this.primary.query<{ lsn: string }>(PRIMARY_LSN_SQL);
    return recordEnd(parseLsn(res.rows[0]?.lsn) ?? 0n);
  }

  /**
   * The token a client carries to a later request so its reads see this scope's writes: the
   * primary WAL position after them (see `parseConsistencyToken` for the form). `undefined` when
   * the scope wrote nothing and carried no token. Outside any scope, or with
   * `consistency: 'eventual'` (writes are not tracked), it is the primary's current position.
   */
  async consistencyToken(): Promise<string | undefined> {
    const scope = routingStorage.getStore();
    const tx = scope?.tx?.get(this.name);
    if (tx !== undefined && tx.state !== 'ended') throw new TransactionInProgressError(this.name);
    const lsn =
      scope === undefined || this.options.routing.consistency !== 'read-your-writes' ? await this.#currentPrimaryLsn() : await this.#sessionLsn(scope.session, false);
    return lsn === undefined ? undefined : formatConsistencyToken(this.name, lsn, DEFAULT_DATABASE);
  }

  /** True when this replica may serve a read that must see `required`. */
  usable(r: ReplicaState, required: bigint | undefined, now: number): boolean {
    if (r.bannedUntil !== 0 || !r.node.available) return false;
    const routing = this.options.routing;
    if (routing.maxReplicationLagMs > 0 && r.lagMs !== undefined && r.lagMs > routing.maxReplicationLagMs) return false;
    if (routing.maxReplicationLagBytes > 0 && r.lagBytes !== undefined && r.lagBytes > routing.maxReplicationLagBytes) return false;
    if (required !== undefined && (r.replayLsn === undefined || r.replayLsn < required)) return false;
    void now;
    return true;
  }

  /** Picks a usable replica with the configured strategy, skipping `exclude`. */
  pickReplica(required: bigint | undefined, exclude: ReplicaState | undefined): ReplicaState | undefined {
    const replicas = this.replicas;
    const n = replicas.length;
    if (n === 0) return undefined;
    const now = Date.now();
    const strategy = this.options.routing.strategy;
    if (strategy === 'round-robin') {
      for (let i = 0; i < n; i++) {
        const r = replicas[(this.#rr + i) % n]!;
        if (r !== exclude && this.usable(r, required, now)) {
          this.#rr = (this.#rr + i + 1) % n;
          return r;
        }
      }
      return undefined;
    }
    if (strategy === 'random') {
      const start = Math.floor(Math.random() * n);
      for (let i = 0; i < n; i++) {
        const r = replicas[(start + i) % n]!;
        if (r !== exclude && this.usable(r, required, now)) return r;
      }
      return undefined;
    }
    if (strategy === 'weighted') {
      let best: ReplicaState | undefined;
      let total = 0;
      for (const r of replicas) {
        if (r === exclude || !this.usable(r, required, now)) continue;
        const w = r.node.config.weight;
        r.current += w;
        total += w;
        if (best === undefined || r.current > best.current) best = r;
      }
      if (best !== undefined) best.current -= total;
      return best;
    }
    if (strategy === 'least-busy') {
      let best: ReplicaState | undefined;
      let bestLoad = Infinity;
      for (let i = 0; i < n; i++) {
        const r = replicas[(this.#rr + i) % n]!;
        if (r === exclude || !this.usable(r, required, now)) continue;
        const load = r.node.inUse + r.node.waiting;
        if (load < bestLoad) {
          best = r;
          bestLoad = load;
        }
      }
      this.#rr = (this.#rr + 1) % n;
      return best;
    }
    return this.#pickWith(strategy, required, exclude, now);
  }

  #pickWith(selector: (candidates: readonly ReplicaCandidate[]) => ReplicaCandidate | undefined, required: bigint | undefined, exclude: ReplicaState | undefined, now: number): ReplicaState | undefined {
    const states: ReplicaState[] = [];
    const candidates: ReplicaCandidate[] = [];
    for (const r of this.replicas) {
      if (r === exclude || !this.usable(r, required, now)) continue;
      const s = r.node.state();
      states.push(r);
      candidates.push({ name: r.node.name, weight: r.node.config.weight, inUse: s.inUse, waiting: s.waiting, idle: s.idle, total: s.total, lagMs: r.lagMs });
    }
    if (candidates.length === 0) return undefined;
    const chosen = selector(candidates);
    if (chosen === undefined || chosen === null) return undefined;
    let i = candidates.indexOf(chosen);
    if (i === -1) i = candidates.findIndex((c) => c.name === (chosen as { name?: unknown }).name);
    if (i === -1) {
      throw new PoolError(
        `Cannot route a read on database "${this.name}" because the routing.strategy function returned ${describe(chosen)}, which is not one of the candidates it was given ` +
          `(${candidates.map((c) => c.name).join(', ')}). Please make sure that it returns one of its candidates, or undefined to use the primary.`,
      );
    }
    return states[i];
  }

  #unusableDetail(required?: bigint): string {
    if (this.replicas.length === 0) return 'none is configured';
    const routing = this.options.routing;
    return this.replicas
      .map((r) => {
        let why = typeof routing.strategy === 'function' ? 'in rotation, but the routing.strategy function picked none' : 'in rotation';
        if (r.bannedUntil !== 0) why = `banned after a connection failure: ${r.banReason}`;
        else if (!r.node.available) why = 'circuit breaker open';
        else if (routing.maxReplicationLagMs > 0 && r.lagMs !== undefined && r.lagMs > routing.maxReplicationLagMs) {
          why = `lagging ${Math.round(r.lagMs)}ms behind the primary (maxReplicationLagMs ${routing.maxReplicationLagMs})`;
        } else if (routing.maxReplicationLagBytes > 0 && r.lagBytes !== undefined && r.lagBytes > routing.maxReplicationLagBytes) {
          why = `lagging ${r.lagBytes} bytes behind the primary (maxReplicationLagBytes ${routing.maxReplicationLagBytes})`;
        } else if (required !== undefined && (r.replayLsn === undefined || r.replayLsn < required)) {
          why = `has not replayed ${formatLsn(required)} yet`;
        }
        return `${r.node.name} ${why}`;
      })
      .join('; ');
  }

  // Bans and probes --------------------------------------------------------------------
  /** Takes a replica out of rotation after a connection-class failure until a probe succeeds. */
  ban(r: ReplicaState, err: unknown): void {
    if (this.#closed) return;
    const reason = this.scrub((err as Error)?.message ?? String(err));
    const first = r.bannedUntil === 0;
    r.bannedUntil = Date.now() + this.options.routing.replicaBanMs;
    r.banReason = reason;
    if (!first) return;
    r.node.counters.bans++;
    r.node.pauseRefill();
    r.node.evictAll();
    this.logger.warn(`Replica "${this.name}/${r.node.name}" (${r.node.config.address}) banned for ${this.options.routing.replicaBanMs}ms: ${reason}`);
    if (this.emitting) this.emit({ type: 'replica-banned', database: this.name, node: r.node.name, role: 'replica', at: Date.now(), untilMs: r.bannedUntil, reason });
    this.#scheduleProbe(r);
  }

  #scheduleProbe(r: ReplicaState): void {
    clearTimeout(r.probe);
    const delay = Math.max(50, r.bannedUntil - Date.now());
    r.probe = setTimeout(() => void this.#probe(r), delay);
    r.probe.unref();
  }

  async #probe(r: ReplicaState): Promise<void> {
    if (this.#closed) return;
    try {
      await r.node.systemQuery('SELECT 1', undefined, this.#checkTimeoutMs());
      await this.#samplePrimary();
      await this.#measureReplica(r);
      if (this.#closed) return;
      r.bannedUntil = 0;
      r.banReason = '';
      r.current = 0;
      r.node.resumeRefill();
      this.logger.log(`Replica "${this.name}/${r.node.name}" (${r.node.config.address}) is healthy again and back in rotation.`);
      if (this.emitting) this.emit({ type: 'replica-restored', database: this.name, node: r.node.name, role: 'replica', at: Date.now() });
    } catch (err) {
      if (this.#closed) return;
      r.bannedUntil = Date.now() + this.options.routing.replicaBanMs;
      r.banReason = this.scrub((err as Error)?.message ?? String(err));
      this.#scheduleProbe(r);
    }
  }

  // Hung nodes ----------------------------------------------------------------------------
  /** Why the node monitor considers `node` hung, or `undefined`. */
  hungReason(node: NodePool): string | undefined {
    return this.#monitor?.hungReason(node);
  }

  /** A hung replica leaves rotation (its waiting reads are retried elsewhere); a hung node's waiting statements are aborted. */
  #onHung(node: NodePool, reason: string): void {
    if (this.#closed) return;
    const err = new NodeHungError(this.name, node.name, node.config.address, reason);
    this.logger.warn(`Node "${this.name}/${node.name}" (${node.config.address}) stopped answering (${reason}): its waiting statements are aborted${node.role === 'replica' ? ' and it leaves read rotation' : ''}.`);
    if (this.emitting) this.emit({ type: 'error', kind: 'connection', database: this.name, node: node.name, role: node.role, at: Date.now(), message: err.message });
    const replica = this.replicas.find((r) => r.node === node);
    if (replica !== undefined) this.ban(replica, err);
    node.abort(err);
    if (node === this.primary && this.topology.discovering) void this.topology.check('the write node stopped answering');
  }

  #onAnswering(node: NodePool): void {
    if (this.#closed) return;
    this.logger.log(`Node "${this.name}/${node.name}" (${node.config.address}) answers again.`);
    node.reachable();
    const replica = this.replicas.find((r) => r.node === node);
    if (replica !== undefined && replica.bannedUntil !== 0) {
      clearTimeout(replica.probe);
      replica.probe = setTimeout(() => void this.#probe(replica), 0);
      replica.probe.unref();
    }
  }

  // Lag monitor --------------------------------------------------------------------------
  startLagMonitor(): void {
    this.topology.start();
    if (this.#states.length < 2 || this.#lagTimer !== undefined || this.#closed) return;
    this.#lagTimer = setInterval(() => void this.checkLag(), this.options.routing.lagCheckIntervalMs);
    this.#lagTimer.unref();
  }

  /** Measures every replica's replay position and lag against the primary. */
  async checkLag(): Promise<void> {
    if (this.#lagRunning || this.#closed || this.replicas.length === 0) return;
    if (this.options.lazy && this.nodes.every((n) => n.state().total === 0)) return;
    this.#lagRunning = true;
    try {
      await this.#samplePrimary();
      await Promise.all(
        this.replicas
          .filter((r) => r.bannedUntil === 0)
          .map((r) =>
            this.#measureReplica(r).catch((err: unknown) => {
              if (isConnectionError(err)) this.ban(r, err);
            }),
          ),
      );
    } finally {
      this.#lagRunning = false;
    }
  }

  /** Records the primary's WAL position; a primary that cannot answer leaves the history as it is. */
  async #samplePrimary(): Promise<void> {
    try {
      const res = await this.primary.systemQuery<{ lsn: string }>(PRIMARY_FLUSH_LSN_SQL, undefined, this.#checkTimeoutMs());
      const lsn = parseLsn(res.rows[0]?.lsn);
      if (lsn !== undefined) this.#wal.record(recordEnd(lsn), Date.now());
    } catch {
      // The primary being down is reported by health checks; replicas are still measured.
    }
  }

  async #measureReplica(r: ReplicaState): Promise<void> {
    const res = await r.node.systemQuery<{ replay: string | null; since_ms: string | number | null }>(LAG_SQL, undefined, this.#checkTimeoutMs());
    const row = res.rows[0];
    const replay = parseLsn(row?.replay);
    const now = Date.now();
    r.lastCheckedAt = now;
    if ((row as { recovering?: boolean } | undefined)?.recovering === false) void this.topology.check('a replica answered as a primary');
    if (replay === undefined) {
      r.replayLsn = undefined;
      r.lagMs = undefined;
      r.lagBytes = undefined;
      return;
    }
    if (r.replayLsn === undefined || replay > r.replayLsn || r.replayLsn - replay > 1n << 32n) r.replayLsn = replay;
    const primaryLsn = this.#wal.latest;
    if (primaryLsn === undefined) {
      // Not measurable (no primary position known yet): unknown, not 0.
      r.lagBytes = undefined;
      r.lagMs = undefined;
      return;
    }
    const behind = primaryLsn !== undefined && primaryLsn > replay ? primaryLsn - replay : 0n;
    r.lagBytes = Number(behind);
    const since = row?.since_ms === null || row?.since_ms === undefined ? undefined : Number(row.since_ms);
    r.lagMs = behind === 0n ? 0 : this.#wal.lagMs(replay, since, now);
  }

  /** The deadline of a lag check or probe: a node that does not answer within it has its connection destroyed. */
  #checkTimeoutMs(): number {
    return Math.max(1000, Math.min(5000, this.options.routing.lagCheckIntervalMs * 2));
  }

  // Client-level helpers ---------------------------------------------------------------------
  /** Takes a client for `fn` from the node the scope (or `readOnly`) picks and always gives it back. */
  async withClient<T>(fn: (client: PoolClient) => Promise<T> | T, readOnly?: boolean): Promise<T> {
    const scope = routingStorage.getStore();
    const tx = scope?.tx?.get(this.name);
    if (tx !== undefined) {
      const ended = tx.refusal();
      if (ended !== undefined) throw ended;
      if (readOnly ?? scope!.readOnly) {
        const refused = this.#readOnlyInTransaction(tx);
        if (refused !== undefined) throw refused;
      }
      return fn(tx.handle.client);
    }
    if (readOnly ?? scope?.readOnly ?? false) return this.#withReadClient(fn, await this.#requiredLsn(scope));
    const node = this.topology.writable();
    node.counters.routedWrites++;
    const tracked = scope !== undefined && this.options.routing.consistency === 'read-your-writes';
    const client = await this.#watchAcquire(node.acquire());
    // Marked once the client is there (what `fn` sends may write, and a read may come before `fn`
    // settles, e.g. a query builder's transaction that resolves before it releases the client) and again at the end.
    if (tracked) markWrite(scope, this.name);
    const { watch, lent } = watchLent(client);
    let failure: unknown;
    try {
      return await fn(lent);
    } catch (err) {
      failure = err;
      throw err;
    } finally {
      watch.detach();
      const own = watch.releaseError(failure);
      if (own !== undefined) this.writeFailed(own);
      node.release(client, own);
      if (tracked) markWrite(scope, this.name);
    }
  }

  /** `db.replica.withClient`: a replica client whatever the scope says (no transaction, no read-your-writes). */
  withReplicaClient<T>(fn: (client: PoolClient) => Promise<T> | T): Promise<T> {
    return this.#withReadClient(fn, undefined);
  }

  async #withReadClient<T>(fn: (client: PoolClient) => Promise<T> | T, required: bigint | undefined): Promise<T> {
    let node: NodePool | undefined;
    let client: PoolClient | undefined;
    let failed: ReplicaState | undefined;
    let failure: unknown;
    for (let attempt = 0; attempt < 2 && client === undefined; attempt++) {
      let r = this.pickReplica(required, failed);
      if (r === undefined && attempt === 0 && required !== undefined && this.#refreshable(required)) {
        await this.#refreshReplay(required);
        r = this.pickReplica(required, undefined);
      }
      if (r === undefined) break;
      r.node.counters.routedReads++;
      if (attempt > 0) r.node.counters.retries++;
      try {
        client = await r.node.acquire();
        node = r.node;
      } catch (err) {
        if (!isConnectionError(err)) throw err;
        this.ban(r, err);
        failed = r;
        failure = err;
      }
    }
    if (client === undefined || node === undefined) {
      const counters = this.primary.counters;
      if (this.replicas.length !== 0) {
        if (!this.#mayUsePrimary(required)) throw this.#noReplica(required, failure);
        counters.fallbacks++;
        if (failure !== undefined) counters.retries++;
      } else if (!this.options.routing.fallbackToPrimary) {
        throw new NoReplicaAvailableError(this.name, this.#unusableDetail(required));
      }
      counters.routedReads++;
      node = this.primary;
      client = await node.acquire();
    }
    const scope = node === this.primary && this.options.routing.consistency === 'read-your-writes' ? routingStorage.getStore() : undefined;
    const { watch, lent } = watchLent(client);
    let error: unknown;
    try {
      return await fn(lent);
    } catch (err) {
      error = err;
      throw node.role === 'replica' ? this.#explain(err, node) : err;
    } finally {
      watch.detach();
      node.release(client, watch.releaseError(error));
      // On the primary, what `fn` ran may have written (a forgotten readOnly): it counts for read-your-writes.
      if (scope !== undefined) markWrite(scope, this.name);
    }
  }

  /** Runs `fn` in a transaction on one pinned primary client; nested calls join it. */
  transaction<T>(fn: (tx: TransactionHandle) => Promise<T> | T, options: TransactionOptions = {}): Promise<T> {
    return this.#transactions.run(fn, options);
  }

  /** The node writes go to now (`PrimaryUnavailableError` while none is known); used by the transaction runner. */
  writeNode(): NodePool {
    return this.topology.writable();
  }

  /** A write (or its acquire) failed on the write node: a connection loss or 25006 triggers a role check. */
  writeFailed(err: unknown): void {
    if (this.topology.discovering) this.#writeFailed(err);
  }

  #watchAcquire(promise: Promise<PoolClient>): Promise<PoolClient> {
    if (!this.topology.discovering) return promise;
    return promise.catch((err: unknown) => {
      this.#writeFailed(err);
      throw err;
    });
  }

  // Lifecycle ----------------------------------------------------------------------------------
  /**
   * Opens every pool up to `min` (unless `lazy`). The primary must come up or start-up fails;
   * a replica that cannot be reached is banned and probed in the background instead.
   */
  async warmUp(): Promise<void> {
    if (this.options.lazy) return;
    if (this.topology.discovering) return this.#warmUpAndDiscover();
    await Promise.all([
      this.primary.warmUp(),
      ...this.replicas.map((r) =>
        r.node.warmUp().catch((err: unknown) => {
          this.ban(r, err);
        }),
      ),
    ]);
  }

  /**
   * With role discovery: every node warms up, then every node is asked its role. Start-up fails
   * only when no node answers as the primary (with the configured primary's error when it was down).
   */
  async #warmUpAndDiscover(): Promise<void> {
    let primaryError: unknown;
    const configured = this.#states[0]!.node;
    await Promise.all(
      this.#states.map((r) =>
        r.node.warmUp().catch((err: unknown) => {
          if (r.node === configured) primaryError = err;
          else this.ban(r, err);
        }),
      ),
    );
    await this.topology.check(START_UP);
    if (primaryError !== undefined && this.topology.writer === configured) throw primaryError;
    if (this.topology.lostSince !== 0) throw this.topology.unavailable();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.topology.close();
    clearInterval(this.#lagTimer);
    for (const r of this.#states) clearTimeout(r.probe);
    await this.#monitor?.stop();
    const nodes = this.nodes;
    const timeout = this.options.shutdownTimeoutMs;
    const outstanding = await Promise.all(nodes.map((n) => n.drain(timeout)));
    outstanding.forEach((left, i) => {
      if (left > 0) this.logger.warn(`Ending pool "${this.name}/${nodes[i]!.name}" with ${left} client(s) still checked out after ${timeout}ms.`);
    });
    await Promise.all(nodes.map((n) => n.end()));
    this.#events.complete();
  }

  get closed(): boolean {
    return this.#closed;
  }
}

const WAL_PAGE = 8192n;
const WAL_PAGE_HEADER = 24n;

/**
 * A primary position just past a WAL page header (where the next record would start) is the
 * same point as the page boundary a replica reports once it replayed the record ending there.
 */
export function recordEnd(lsn: bigint): bigint {
  return lsn % WAL_PAGE === WAL_PAGE_HEADER ? lsn - WAL_PAGE_HEADER : lsn;
}

function describe(value: unknown): string {
  if (value !== null && typeof value === 'object') {
    const name = (value as { name?: unknown }).name;
    return typeof name === 'string' ? `an object named ${JSON.stringify(name)}` : 'an object';
  }
  return `${JSON.stringify(value)} (${typeof value})`;
}
