import { Logger } from '@nestjs/common';
import type { PoolClient, QueryResult, QueryResultRow } from 'pg';
import { Subject, type Observable } from 'rxjs';
import type { ResolvedOptions } from '../config/resolve-options.js';
import { scrubSecrets } from '../config/redact.js';
import { NoReplicaAvailableError, ReadOnlyInTransactionError } from '../pool.exceptions.js';
import type { PoolEvent } from '../pool.events.js';
import type { ReplicaCandidate, TransactionOptions } from '../pool.interfaces.js';
import {
  formatLsn,
  markWrite,
  parseLsn,
  routingStorage,
  runInTransaction,
  type PinnedTransaction,
  type RoutingScope,
} from '../routing/routing-context.js';
import { isConnectionError, isReadOnlyViolation } from './errors.js';
import { NodePool, type NodeHost, type QueryInput } from './node-pool.js';

/** What routing knows about one replica. */
export class ReplicaState {
  bannedUntil = 0;
  banReason = '';
  lagMs: number | undefined = undefined;
  lagBytes: number | undefined = undefined;
  replayLsn: bigint | undefined = undefined;
  lastCheckedAt = 0;
  /** Smooth weighted round-robin accumulator. */
  current = 0;
  probe: NodeJS.Timeout | undefined;
  constructor(readonly node: NodePool) {}
}

export type RouteReason = 'read' | 'write' | 'fallback' | 'retry' | 'transaction' | 'consistency';

const LAG_SQL =
  'SELECT pg_last_wal_replay_lsn()::text AS replay, ' +
  'EXTRACT(EPOCH FROM (clock_timestamp() - pg_last_xact_replay_timestamp())) * 1000 AS since_ms';

const TX_BEGIN: Record<NonNullable<TransactionOptions['isolationLevel']>, string> = {
  'read uncommitted': ' ISOLATION LEVEL READ UNCOMMITTED',
  'read committed': ' ISOLATION LEVEL READ COMMITTED',
  'repeatable read': ' ISOLATION LEVEL REPEATABLE READ',
  serializable: ' ISOLATION LEVEL SERIALIZABLE',
};

export interface QueryRunner {
  query<R extends QueryResultRow = any>(text: QueryInput, values?: unknown[]): Promise<QueryResult<R>>;
}

/** The handle a transaction callback receives. */
export interface TransactionHandle extends QueryRunner {
  /** The pinned primary client. Do not release it: the transaction does. */
  readonly client: PoolClient;
}

/**
 * All pools of one database (primary + replicas) and the routing between them: scope-aware
 * node choice, replica bans with background probes, lag monitoring, read-your-writes and
 * pinned transactions.
 */
export class PoolCluster implements NodeHost {
  readonly primary: NodePool;
  readonly replicas: readonly ReplicaState[];
  readonly logger: Logger;
  readonly #events = new Subject<PoolEvent>();
  readonly events$: Observable<PoolEvent> = this.#events.asObservable();
  #rr = 0;
  #lagTimer: NodeJS.Timeout | undefined;
  #lagRunning = false;
  #primaryLsn: bigint | undefined;
  #closed = false;

  constructor(readonly options: ResolvedOptions) {
    this.logger = new Logger(`PoolModule:${options.database}`);
    this.primary = new NodePool(options.primary, this);
    this.replicas = options.replicas.map((r) => new ReplicaState(new NodePool(r, this)));
  }

  get name(): string {
    return this.options.database;
  }

  get nodes(): NodePool[] {
    return [this.primary, ...this.replicas.map((r) => r.node)];
  }

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

  /** Runs a statement on the primary and remembers the write for read-your-writes. */
  write<R extends QueryResultRow = any>(scope: RoutingScope | undefined, text: QueryInput, values?: unknown[]): Promise<QueryResult<R>> {
    this.primary.counters.routedWrites++;
    if (scope !== undefined && this.options.routing.consistency === 'read-your-writes') markWrite(scope, this.name);
    return this.primary.query<R>(text, values);
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
    if (first === undefined) return this.#fallback<R>(required, text, values);
    first.node.counters.routedReads++;
    return first.node.query<R>(text, values).catch((err: unknown) => {
      if (!isConnectionError(err)) throw this.#explain(err, first.node);
      this.ban(first, err);
      const second = this.pickReplica(required, first);
      if (second === undefined) {
        if (!this.options.routing.fallbackToPrimary) throw err;
        this.primary.counters.retries++;
        return this.#fallback<R>(required, text, values);
      }
      second.node.counters.retries++;
      second.node.counters.routedReads++;
      return second.node.query<R>(text, values).catch((err2: unknown) => {
        if (isConnectionError(err2)) this.ban(second, err2);
        throw this.#explain(err2, second.node);
      });
    });
  }

  #fallback<R extends QueryResultRow>(required: bigint | undefined, text: QueryInput, values: unknown[] | undefined): Promise<QueryResult<R>> {
    if (!this.options.routing.fallbackToPrimary && (required === undefined || this.replicas.length === 0)) {
      return Promise.reject(new NoReplicaAvailableError(this.name, this.#unusableDetail()));
    }
    if (this.replicas.length !== 0) this.primary.counters.fallbacks++;
    this.primary.counters.routedReads++;
    return this.primary.query<R>(text, values);
  }

  #explain(err: unknown, node: NodePool): unknown {
    if (isReadOnlyViolation(err) && err instanceof Error && !err.message.includes('read replica')) {
      err.message += ` (sent to read replica "${this.name}/${node.name}": a write inside a @ReadOnly() scope or on db.replica)`;
    }
    return err;
  }

  #inTransaction<R extends QueryResultRow>(tx: PinnedTransaction, scope: RoutingScope, text: QueryInput, values?: unknown[]): Promise<QueryResult<R>> {
    if (scope.readOnly && !tx.readOnly) {
      const mode = this.options.routing.readOnlyInTransaction;
      if (mode === 'throw') return Promise.reject(new ReadOnlyInTransactionError(this.name));
      if (mode === 'warn' && !tx.warned) {
        tx.warned = true;
        this.logger.warn(`A @ReadOnly() scope ran inside a transaction on "${this.name}"; it uses the transaction's primary client.`);
      }
    }
    return this.primary.run<R>(tx.client, text, values, false);
  }

  /** The WAL position reads of this scope must see, resolving a pending write lazily. */
  #requiredLsn(scope: RoutingScope | undefined): bigint | undefined | Promise<bigint | undefined> {
    if (scope === undefined || this.replicas.length === 0) return undefined;
    const session = scope.session;
    const carried = session.minLsn;
    if (session.dirty !== undefined && session.dirty.has(this.name)) {
      return this.#currentPrimaryLsn().then((lsn) => {
        session.dirty!.delete(this.name);
        (session.writeLsn ??= new Map()).set(this.name, lsn);
        return carried !== undefined && carried > lsn ? carried : lsn;
      });
    }
    const written = session.writeLsn?.get(this.name);
    if (written === undefined) return carried;
    return carried !== undefined && carried > written ? carried : written;
  }

  async #currentPrimaryLsn(): Promise<bigint> {
    const res = await this.primary.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
    const lsn = parseLsn(res.rows[0]?.lsn) ?? 0n;
    if (this.#primaryLsn === undefined || lsn > this.#primaryLsn) this.#primaryLsn = lsn;
    return lsn;
  }

  /** The token a client carries to a later request so its reads see this scope's writes. */
  async consistencyToken(): Promise<string | undefined> {
    const scope = routingStorage.getStore();
    if (scope === undefined) return formatLsn(await this.#currentPrimaryLsn());
    const lsn = await this.#requiredLsn(scope);
    return lsn === undefined ? undefined : formatLsn(lsn);
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
    const candidates: Array<ReplicaCandidate & { state: ReplicaState }> = [];
    for (const r of replicas) {
      if (r === exclude || !this.usable(r, required, now)) continue;
      const s = r.node.state();
      candidates.push({ state: r, name: r.node.name, weight: r.node.config.weight, inUse: s.inUse, waiting: s.waiting, idle: s.idle, total: s.total, lagMs: r.lagMs });
    }
    if (candidates.length === 0) return undefined;
    const chosen = strategy(candidates) as (ReplicaCandidate & { state?: ReplicaState }) | undefined;
    return chosen?.state;
  }

  #unusableDetail(): string {
    if (this.replicas.length === 0) return 'none is configured';
    return this.replicas
      .map((r) => {
        const why = r.bannedUntil !== 0 ? `banned: ${r.banReason}` : !r.node.available ? 'breaker open' : r.lagMs !== undefined ? `lag ${Math.round(r.lagMs)}ms` : 'behind the required WAL position';
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
      await r.node.pool.query('SELECT 1');
      await this.#measureReplica(r);
      r.bannedUntil = 0;
      r.banReason = '';
      this.logger.log(`Replica "${this.name}/${r.node.name}" (${r.node.config.address}) is healthy again and back in rotation.`);
      if (this.emitting) this.emit({ type: 'replica-restored', database: this.name, node: r.node.name, role: 'replica', at: Date.now() });
    } catch (err) {
      r.bannedUntil = Date.now() + this.options.routing.replicaBanMs;
      r.banReason = this.scrub((err as Error)?.message ?? String(err));
      this.#scheduleProbe(r);
    }
  }

  // Lag monitor --------------------------------------------------------------------------
  startLagMonitor(): void {
    if (this.replicas.length === 0 || this.#lagTimer !== undefined) return;
    this.#lagTimer = setInterval(() => void this.checkLag(), this.options.routing.lagCheckIntervalMs);
    this.#lagTimer.unref();
  }

  /** Measures every replica's replay position and lag against the primary. */
  async checkLag(): Promise<void> {
    if (this.#lagRunning || this.#closed) return;
    this.#lagRunning = true;
    try {
      try {
        const res = await this.primary.pool.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
        const lsn = parseLsn(res.rows[0]?.lsn);
        if (lsn !== undefined) this.#primaryLsn = lsn;
      } catch {
        // The primary being down is reported by health checks; replicas are still measured.
      }
      await Promise.all(this.replicas.filter((r) => r.bannedUntil === 0).map((r) => this.#measureReplica(r).catch((err) => {
        if (isConnectionError(err)) this.ban(r, err);
      })));
    } finally {
      this.#lagRunning = false;
    }
  }

  async #measureReplica(r: ReplicaState): Promise<void> {
    const res = await r.node.pool.query<{ replay: string | null; since_ms: string | null }>(LAG_SQL);
    const row = res.rows[0];
    const replay = parseLsn(row?.replay);
    r.replayLsn = replay;
    r.lastCheckedAt = Date.now();
    const primaryLsn = this.#primaryLsn;
    if (replay === undefined) {
      r.lagMs = undefined;
      r.lagBytes = undefined;
      return;
    }
    const behind = primaryLsn !== undefined && primaryLsn > replay ? Number(primaryLsn - replay) : 0;
    r.lagBytes = behind;
    r.lagMs = behind === 0 ? 0 : Math.max(0, Number(row?.since_ms ?? 0));
  }

  // Client-level helpers ---------------------------------------------------------------------
  /** Takes a client for `fn` from the node the scope (or `readOnly`) picks and always gives it back. */
  async withClient<T>(fn: (client: PoolClient) => Promise<T> | T, readOnly?: boolean): Promise<T> {
    const scope = routingStorage.getStore();
    const tx = scope?.tx?.get(this.name);
    if (tx !== undefined) return fn(tx.client);
    const wantsReplica = readOnly ?? scope?.readOnly ?? false;
    let node = this.primary;
    if (wantsReplica) {
      const required = await this.#requiredLsn(scope);
      const r = this.pickReplica(required, undefined);
      if (r !== undefined) node = r.node;
      else if (!this.options.routing.fallbackToPrimary) throw new NoReplicaAvailableError(this.name, this.#unusableDetail());
      else this.primary.counters.fallbacks++;
      node.counters.routedReads++;
    } else {
      node.counters.routedWrites++;
      if (scope !== undefined && this.options.routing.consistency === 'read-your-writes') markWrite(scope, this.name);
    }
    const client = await node.acquire();
    let failure: unknown;
    try {
      return await fn(client);
    } catch (err) {
      failure = err;
      throw err;
    } finally {
      node.release(client, failure);
    }
  }

  /** Runs `fn` in a transaction on one pinned primary client; nested calls join it. */
  async transaction<T>(fn: (tx: TransactionHandle) => Promise<T> | T, options: TransactionOptions = {}): Promise<T> {
    const scope = routingStorage.getStore();
    const existing = scope?.tx?.get(this.name);
    if (existing !== undefined && options.propagation !== 'requiresNew') {
      return fn(this.#handle(existing.client));
    }
    const node = this.primary;
    node.counters.routedWrites++;
    const client = await node.acquire();
    const handle = this.#handle(client);
    let begin = 'BEGIN';
    if (options.isolationLevel !== undefined) {
      const level = TX_BEGIN[options.isolationLevel];
      if (level === undefined) {
        node.release(client);
        throw new TypeError(`Invalid transaction option isolationLevel: expected one of ${Object.keys(TX_BEGIN).join(', ')}, got ${JSON.stringify(options.isolationLevel)}.`);
      }
      begin += level;
    }
    if (options.readOnly) begin += ' READ ONLY';
    if (options.deferrable) begin += ' DEFERRABLE';
    const pinned: PinnedTransaction = { database: this.name, client, readOnly: options.readOnly === true, warned: false };
    let failure: unknown;
    try {
      await node.run(client, begin, undefined, false);
      const result = await runInTransaction(pinned, () => fn(handle));
      await node.run(client, 'COMMIT', undefined, false);
      if (!pinned.readOnly && this.options.routing.consistency === 'read-your-writes') markWrite(scope, this.name);
      return result;
    } catch (err) {
      failure = err;
      if (!isConnectionError(err)) {
        try {
          await client.query('ROLLBACK');
        } catch (rollbackError) {
          failure = rollbackError;
        }
      }
      throw err;
    } finally {
      node.release(client, failure);
    }
  }

  #handle(client: PoolClient): TransactionHandle {
    return {
      client,
      query: <R extends QueryResultRow = any>(text: QueryInput, values?: unknown[]) => this.primary.run<R>(client, text, values, false),
    };
  }

  // Lifecycle ----------------------------------------------------------------------------------
  /**
   * Opens every pool up to `min` (unless `lazy`). The primary must come up or start-up fails;
   * a replica that cannot be reached is banned and probed in the background instead.
   */
  async warmUp(): Promise<void> {
    if (this.options.lazy) return;
    await Promise.all([
      this.primary.warmUp(),
      ...this.replicas.map((r) =>
        r.node.warmUp().catch((err: unknown) => {
          this.ban(r, err);
        }),
      ),
    ]);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#lagTimer);
    for (const r of this.replicas) clearTimeout(r.probe);
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
