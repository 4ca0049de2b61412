import { Logger } from '@nestjs/common';
import type { CompiledSessionContext, SessionContexts } from '../session/session-context.js';
import type { PoolClient, QueryResult, QueryResultRow } from 'pg';
import { Subject, concat, defer, from, type Observable } from 'rxjs';
import type { ResolvedOptions } from '../config/resolve-options.js';
import { scrubSecrets } from '../config/redact.js';
import { EndpointRoleError, NodeHungError, ReadOnlyInTransactionError } from '../pool.exceptions.js';
import type { PoolEvent } from '../pool.events.js';
import type { TransactionOptions } from '../pool.interfaces.js';
import { ownError } from '../pool/checkout.js';
import type { TransactionHandle } from '../transactions/pinned-transaction.js';
import { TransactionRunner } from '../transactions/transaction-runner.js';
import { markWrite, routingStorage, type ScopedTransaction, type RoutingScope } from '../routing/routing-context.js';
import { ReadYourWrites } from '../routing/read-your-writes.js';
import { ReplicaReads } from '../routing/replica-reads.js';
import { LagMonitor } from '../cluster/lag-monitor.js';
import { ReplicaSet } from '../cluster/replica-set.js';
import type { ReaderState } from '../routing/reader-state.js';
import type { RoutedHost } from '../routing/routed-host.js';
import { Topology } from '../cluster/topology.js';
import { warmUp } from '../cluster/warm-up.js';
import { NodeMonitor } from '../cluster/node-monitor.js';
import { WriteHold } from '../cluster/write-hold.js';
import { WritePath } from '../cluster/write-path.js';
import { NodePool, type NodeHost, type QueryInput } from '../pool/node-pool.js';

/**
 * All pools of one database (primary + replicas): sends each statement where its scope says
 * (pinned transaction, replica read, primary write) and is the host of its pools. It wires the
 * topology, the replica set (reader states, bans, reader choice), the node and lag monitors, the
 * replica reads, read-your-writes and the transaction runner.
 */
export class PoolCluster implements NodeHost, RoutedHost {
  readonly logger: Logger;
  readonly #events = new Subject<PoolEvent>();
  /** Live events; a subscriber first gets the split brain under way, if any (a state, not only a moment). */
  readonly events$: Observable<PoolEvent> = defer(() => {
    const ongoing = this.topology.splitBrainEvents();
    return ongoing.length === 0 ? this.#events : concat(from(ongoing), this.#events);
  });
  #closed = false;
  readonly #set: ReplicaSet;
  readonly #consistency: ReadYourWrites;
  readonly #reads: ReplicaReads;
  readonly #lag: LagMonitor;
  readonly #transactions = new TransactionRunner(this);
  readonly #monitor: NodeMonitor | undefined;
  readonly #hold: WriteHold;
  readonly #writes: WritePath;

  constructor(readonly options: ResolvedOptions) {
    this.logger = new Logger(`PoolModule:${options.database}`);
    const primary = new NodePool(options.primary, this);
    const replicas = options.replicas.map((r) => new NodePool(r, this));
    this.topology = new Topology(primary, replicas, options.failover, this);
    this.#lagWriter = primary;
    this.#hold = new WriteHold(this, options.failover.holdWritesMs);
    this.#writes = new WritePath(this, this.#hold);
    const routing = options.routing;
    this.#lag = new LagMonitor(this, routing, options.lazy);
    this.#set = new ReplicaSet(this, [primary, ...replicas], routing, this.#lag);
    this.#consistency = new ReadYourWrites(this, this.#set.eligibility);
    this.#reads = new ReplicaReads(this, this.#set.picker, this.#set.eligibility, this.#consistency);
    if (options.monitor.enabled) {
      this.#monitor = new NodeMonitor(this.nodes, options.monitor, { hung: (node, reason) => this.#onHung(node, reason), answering: (node) => this.#onAnswering(node) });
      this.#monitor.start();
    }
  }

  get name(): string {
    return this.options.database;
  }

  get nodes(): NodePool[] {
    return this.#set.all.map((r) => r.node);
  }

  // Topology: the write node and the readers follow the role checks (lib/cluster/topology.ts) --
  readonly topology: Topology;
  /** The write node the lag history is measured against (`undefined` while none answers as the primary). */
  #lagWriter: NodePool | undefined;

  /** The node that takes the writes now (a promoted replica after a failover). */
  get primary(): NodePool {
    return this.topology.writer;
  }

  /** The nodes in read rotation now: those the role checks found in recovery. */
  get replicas(): readonly ReaderState[] {
    return this.#set.readers;
  }

  topologyChanged(): void {
    const writer = this.topology.lostSince === 0 ? this.topology.writer : undefined;
    if (writer !== this.#lagWriter) {
      // A new primary, none, or the same one back after an outage: lag history starts again.
      this.#lagWriter = writer;
      this.#lag.restart();
    }
    this.#hold.changed();
    this.#set.follow((node) => this.topology.isReader(node));
    if (this.#set.readers.length > 0) {
      this.startBackgroundChecks();
      void this.checkLag();
    }
  }

  log(message: string): void {
    this.logger.log(this.scrub(message));
  }

  debug(message: string): void {
    this.logger.debug(this.scrub(message));
  }

  idle(): boolean {
    return this.options.lazy && this.nodes.every((n) => n.pool.totalCount === 0);
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
  /** Debug logging is on (checked per applied session context, cheap). */
  get debugging(): boolean {
    return Logger.isLevelEnabled('debug');
  }
  sessionContexts(): SessionContexts | undefined {
    return routingStorage.getStore()?.contexts;
  }
  contextApplied(node: NodePool, ctx: CompiledSessionContext): void {
    this.logger.debug(`Session context on "${this.name}/${node.name}": ${ctx.description}`);
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
  /** A replica whose connections fail as a gone node's leaves rotation like one whose read failed (probes restore it). */
  breakerOpened(node: NodePool, lastFailure: string): void {
    const reader = this.#set.readerOf(node);
    if (reader !== undefined) this.#set.ban(reader, new Error(lastFailure));
  }
  async initClient(client: PoolClient, node: NodePool): Promise<boolean> {
    if (node.config.endpoint) {
      // An endpoint's role is its configuration; each connection it hands out is checked against it.
      const expected = node.config.role;
      const res = await client.query<{ recovering: boolean }>('SELECT pg_is_in_recovery() AS recovering');
      if (res.rows[0]?.recovering !== (expected === 'replica')) throw new EndpointRoleError(this.name, node.name, node.config.address, expected);
    }
    const hook = this.options.onConnect;
    if (!hook) return false;
    await hook(client, { database: this.name, pool: node.name, role: node.role });
    return true;
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
      if (scope.readOnly) return this.#reads.read<R>(scope, text, values);
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
    return this.#reads.readAt<R>(undefined, text, values);
  }

  /** Runs a statement on the primary (see `WritePath.write`). */
  write<R extends QueryResultRow = any>(scope: RoutingScope | undefined, text: QueryInput, values?: unknown[]): Promise<QueryResult<R>> {
    return this.#writes.write<R>(scope, text, values);
  }

  /** Runs a read on a usable replica (retrying once elsewhere on a connection error), else the primary. */
  read<R extends QueryResultRow = any>(scope: RoutingScope | undefined, text: QueryInput, values?: unknown[]): Promise<QueryResult<R>> {
    return this.#reads.read<R>(scope, text, values);
  }

  /** The error (or `undefined`) for read-only work inside `tx`, per `routing.readOnlyInTransaction`. */
  #readOnlyInTransaction(tx: ScopedTransaction): ReadOnlyInTransactionError | undefined {
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

  #inTransaction<R extends QueryResultRow>(tx: ScopedTransaction, scope: RoutingScope, text: QueryInput, values?: unknown[]): Promise<QueryResult<R>> {
    if (scope.readOnly && tx.state === 'open') {
      const refused = this.#readOnlyInTransaction(tx);
      if (refused !== undefined) return Promise.reject(refused);
    }
    return tx.query<R>(text, values);
  }

  /** See `ReadYourWrites.token`. */
  consistencyToken(): Promise<string | undefined> {
    return this.#consistency.token();
  }

  /** True when this replica may serve a read that must see `required`. */
  usable(r: ReaderState, required: bigint | undefined, now: number): boolean {
    return this.#set.usable(r, required, now);
  }

  /** Picks a usable replica with the configured strategy, skipping `exclude`. */
  pickReplica(required: bigint | undefined, exclude: ReaderState | undefined): ReaderState | undefined {
    return this.#set.pick(required, exclude);
  }

  // Bans ---------------------------------------------------------------------------------------
  /** Takes a replica out of rotation after a connection-class failure until a probe succeeds. */
  ban(r: ReaderState, err: unknown): void {
    this.#set.ban(r, err);
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
    const reader = this.#set.readerOf(node);
    if (reader !== undefined) this.#set.ban(reader, err);
    node.abort(err);
    if (node === this.primary && this.topology.discovering) void this.topology.check('the write node stopped answering');
  }

  #onAnswering(node: NodePool): void {
    if (this.#closed) return;
    this.logger.log(`Node "${this.name}/${node.name}" (${node.config.address}) answers again.`);
    node.reachable();
    const reader = this.#set.readerOf(node);
    if (reader !== undefined) this.#set.probeNow(reader);
  }

  // Background checks ---------------------------------------------------------------------------
  /** Starts the periodic role checks (with `failover.discoverRoles`) and the lag monitor. */
  startBackgroundChecks(): void {
    this.topology.start();
    this.#lag.start(this.#set.all.length);
  }

  /** Measures every replica's replay position and lag against the primary. */
  checkLag(): Promise<void> {
    return this.#lag.check();
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
    if (readOnly ?? scope?.readOnly ?? false) return this.#reads.withClient(fn, await this.#consistency.requiredLsn(scope));
    let node!: NodePool;
    const client = await this.#hold.run(
      Date.now(),
      (writer) => {
        node = writer;
        writer.counters.routedWrites++;
        return this.#hold.watch(writer.acquire());
      },
      'unsent',
    );
    const tracked = scope !== undefined && this.options.routing.consistency === 'read-your-writes';
    // Marked once the client is there (what `fn` sends may write, and a read may come before `fn`
    // settles, e.g. a query builder's transaction that resolves before it releases the client) and again at the end.
    if (tracked) markWrite(scope, this.name);
    let failure: unknown;
    try {
      return await fn(client);
    } catch (err) {
      failure = err;
      throw err;
    } finally {
      const own = ownError(client, failure);
      if (own !== undefined) this.writeFailed(own);
      node.release(client, own);
      if (tracked) markWrite(scope, this.name);
    }
  }

  /** `db.replica.withClient`: a replica client whatever the scope says (no transaction, no read-your-writes). */
  withReplicaClient<T>(fn: (client: PoolClient) => Promise<T> | T): Promise<T> {
    return this.#reads.withClient(fn, undefined);
  }

  /** Runs `fn` in a transaction on one pinned primary client; nested calls join it. */
  transaction<T>(fn: (tx: TransactionHandle) => Promise<T> | T, options: TransactionOptions = {}): Promise<T> {
    return this.#transactions.run(fn, options);
  }

  /** Takes a client of the write node and sends `begin` on it, through the write hold (see `WritePath.begin`). */
  beginOnWriter(begin: (node: NodePool) => Promise<PoolClient>): Promise<{ node: NodePool; client: PoolClient }> {
    return this.#writes.begin(begin);
  }

  /** A write (or its acquire) failed on the write node: a connection loss or 25006 triggers a role check. */
  writeFailed(err: unknown): void {
    this.#hold.writeFailed(err);
  }

  // Lifecycle ----------------------------------------------------------------------------------
  /**
   * Opens every pool up to `min` (unless `lazy`). The primary must come up or start-up fails;
   * a replica that cannot be reached is banned and probed in the background instead.
   */
  async warmUp(): Promise<void> {
    if (!this.options.lazy) await warmUp(this, this.#set.all);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.topology.close();
    this.#lag.stop();
    this.#set.close();
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
