import { Logger } from '@nestjs/common';
import type { CompiledSessionContext } from '../session/session-context.js';
import type { PoolClient, QueryResult, QueryResultRow } from 'pg';
import { Subject, concat, defer, from, type Observable } from 'rxjs';
import type { ResolvedOptions } from '../config/resolve-options.js';
import { scrubSecrets } from '../config/redact.js';
import { EndpointRoleError, NodeHungError, PoolConfigurationError, ReadOnlyInTransactionError } from '../pool.exceptions.js';
import type { PoolEvent } from '../pool.events.js';
import type { TransactionOptions } from '../pool.interfaces.js';
import { ownError } from '../pool/lent-client.js';
import type { TransactionHandle } from '../transactions/pinned-transaction.js';
import { TransactionRunner } from '../transactions/transaction-runner.js';
import { markWrite, routingStorage, type PinnedTransaction, type RoutingScope } from '../routing/routing-context.js';
import { Eligibility } from '../routing/eligibility.js';
import { ReadYourWrites } from '../routing/read-your-writes.js';
import { ReplicaPicker } from '../routing/replica-strategies.js';
import { ReplicaReads } from '../routing/replica-reads.js';
import { LagMonitor } from '../cluster/lag-monitor.js';
import { ReplicaProbes } from '../cluster/replica-probes.js';
import { ReplicaState } from '../cluster/replica-state.js';
import { START_UP, Topology } from '../cluster/topology.js';
import { NodeMonitor } from '../cluster/node-monitor.js';
import { WriteHold } from '../cluster/write-hold.js';
import { neverSent, sqlState } from './errors.js';
import { classifyFailure, FailureClass } from '../errors/failure-class.js';
import { isSingleStatement, NodePool, type NodeHost, type QueryInput } from '../pool/node-pool.js';

/**
 * All pools of one database (primary + replicas): sends each statement where its scope says
 * (pinned transaction, replica read, primary write), bans replicas, and is the host of its
 * pools. It wires the topology, the node and lag monitors, the replica probes and reads,
 * eligibility, the strategies, read-your-writes and the transaction runner.
 */
export class PoolCluster implements NodeHost {
  readonly logger: Logger;
  readonly #events = new Subject<PoolEvent>();
  /** Live events; a subscriber first gets the split brain under way, if any (a state, not only a moment). */
  readonly events$: Observable<PoolEvent> = defer(() => {
    const ongoing = this.topology.splitBrainEvents();
    return ongoing.length === 0 ? this.#events : concat(from(ongoing), this.#events);
  });
  #closed = false;
  readonly #eligibility: Eligibility;
  readonly #picker: ReplicaPicker;
  readonly #consistency: ReadYourWrites;
  readonly #reads: ReplicaReads;
  readonly #lag: LagMonitor;
  readonly #probes: ReplicaProbes;
  readonly #transactions = new TransactionRunner(this);
  readonly #monitor: NodeMonitor | undefined;
  readonly #hold: WriteHold;

  constructor(readonly options: ResolvedOptions) {
    this.logger = new Logger(`PoolModule:${options.database}`);
    const primary = new NodePool(options.primary, this);
    const replicas = options.replicas.map((r) => new NodePool(r, this));
    this.#states = [primary, ...replicas].map((n) => new ReplicaState(n));
    this.#replicas = this.#states.slice(1);
    this.topology = new Topology(primary, replicas, options.failover, this);
    this.#lagWriter = primary;
    this.#hold = new WriteHold(this, options.failover.holdWritesMs);
    const routing = options.routing;
    this.#eligibility = new Eligibility(routing);
    this.#picker = new ReplicaPicker(options.database, routing.strategy);
    this.#consistency = new ReadYourWrites(this, this.#eligibility);
    this.#reads = new ReplicaReads(this, this.#picker, this.#eligibility, this.#consistency);
    this.#lag = new LagMonitor(this, routing, options.lazy);
    this.#probes = new ReplicaProbes(this, this.#lag, routing.replicaBanMs);
    for (const r of this.#states) r.staleAfterMs = routing.lagCheckIntervalMs * 2 + this.#lag.timeoutMs;
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
  /** The write node the lag history is measured against (`undefined` while none answers as the primary). */
  #lagWriter: NodePool | undefined;

  /** The node that takes the writes now (a promoted replica after a failover). */
  get primary(): NodePool {
    return this.topology.writer;
  }

  /** The nodes in read rotation now: those the role checks found in recovery. */
  get replicas(): readonly ReplicaState[] {
    return this.#replicas;
  }

  topologyChanged(): void {
    const writer = this.topology.lostSince === 0 ? this.topology.writer : undefined;
    if (writer !== this.#lagWriter) {
      // A new primary, none, or the same one back after an outage: lag history starts again.
      this.#lagWriter = writer;
      this.#lag.restart();
    }
    this.#hold.changed();
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

  debug(message: string): void {
    this.logger.debug(this.scrub(message));
  }

  idle(): boolean {
    return this.options.lazy && this.nodes.every((n) => n.pool.totalCount === 0);
  }

  /** A write's failure that may mean the write node changed: the roles are checked at once. */
  #writeFailed(err: unknown): void {
    const cls = classifyFailure(err, { writeNode: true });
    const reason =
      cls === FailureClass.NodeGone
        ? 'connection loss of the write node'
        : cls === FailureClass.RoleChange
          ? sqlState(err) === '25006'
            ? '25006 from the write node'
            : 'the write node is changing role'
          : undefined;
    if (reason === undefined) return;
    // Held writes wait for a check that started after this failure (one already running may have asked before it).
    const joined = this.topology.checking;
    const check = this.topology.check(reason);
    this.#hold.suspect(joined ? check.then(() => this.topology.check(reason)) : check);
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
  /** Debug logging is on (checked per applied session context, cheap). */
  get debugging(): boolean {
    return Logger.isLevelEnabled('debug');
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
    const replica = this.replicas.find((r) => r.node === node);
    if (replica !== undefined) this.ban(replica, new Error(lastFailure));
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

  /**
   * Runs a statement on the primary and remembers the write for read-your-writes once it settled,
   * unless it was refused before it reached the server (open breaker, acquire timeout, connect failure).
   */
  write<R extends QueryResultRow = any>(scope: RoutingScope | undefined, text: QueryInput, values?: unknown[]): Promise<QueryResult<R>> {
    const send = (node: NodePool): Promise<QueryResult<R>> => {
      node.counters.routedWrites++;
      return this.#watchWrite(node.query<R>(text, values));
    };
    const single = typeof text === 'string' || typeof (text as { text?: unknown } | null)?.text === 'string' ? isSingleStatement(text) : false;
    const sent = this.#hold.run(Date.now(), send, single ? 'terminated' : 'refused');
    if (scope === undefined || this.options.routing.consistency !== 'read-your-writes') return sent;
    return sent.then(
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
    return this.#reads.read<R>(scope, text, values);
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

  /** See `ReadYourWrites.token`. */
  consistencyToken(): Promise<string | undefined> {
    return this.#consistency.token();
  }

  /** True when this replica may serve a read that must see `required`. */
  usable(r: ReplicaState, required: bigint | undefined, now: number): boolean {
    return this.#eligibility.usable(r, required, now);
  }

  /** Picks a usable replica with the configured strategy, skipping `exclude`. */
  pickReplica(required: bigint | undefined, exclude: ReplicaState | undefined): ReplicaState | undefined {
    return this.#picker.pick(this.#replicas, this.#eligibility, required, exclude);
  }

  // Bans and probes --------------------------------------------------------------------
  /** Takes a replica out of rotation after a connection-class failure until a probe succeeds. */
  ban(r: ReplicaState, err: unknown): void {
    if (this.#closed) return;
    if (r.node.config.endpoint && r.bannedUntil === 0) {
      // One session of a load balancer dropped: the endpoint stays in rotation unless a new connection through it fails too.
      if (this.#verifying.has(r)) return;
      this.#verifying.add(r);
      void this.#probes.answers(r).then((failure) => {
        this.#verifying.delete(r);
        if (failure !== undefined) this.#banNow(r, failure);
      });
      return;
    }
    this.#banNow(r, err);
  }

  readonly #verifying = new Set<ReplicaState>();

  #banNow(r: ReplicaState, err: unknown): void {
    if (this.#closed) return;
    const reason = this.scrub((err as Error)?.message ?? String(err));
    const first = r.bannedUntil === 0;
    const banMs = this.#probes.banMsFor(r);
    r.bannedUntil = Date.now() + banMs;
    r.banReason = reason;
    if (!first) return;
    r.node.counters.bans++;
    r.node.pauseRefill();
    r.node.evictAll();
    this.logger.warn(`Replica "${this.name}/${r.node.name}" (${r.node.config.address}) banned for ${banMs}ms: ${reason}`);
    if (this.emitting) this.emit({ type: 'replica-banned', database: this.name, node: r.node.name, role: 'replica', at: Date.now(), untilMs: r.bannedUntil, reason });
    this.#scheduleProbe(r);
  }

  #scheduleProbe(r: ReplicaState): void {
    this.#probes.schedule(r);
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
    if (replica !== undefined && replica.bannedUntil !== 0) this.#probes.probeNow(replica);
  }

  // Lag monitor --------------------------------------------------------------------------
  startLagMonitor(): void {
    this.topology.start();
    this.#lag.start(this.#states.length);
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
        return this.#watchAcquire(writer.acquire());
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

  /**
   * Takes a client of the write node and sends `begin` on it; while the primary is changing, waits
   * for it (`failover.holdWritesMs`): nothing of the transaction ran before its BEGIN succeeded.
   */
  beginOnWriter(begin: (node: NodePool) => Promise<PoolClient>): Promise<{ node: NodePool; client: PoolClient }> {
    return this.#hold.run(
      Date.now(),
      (node) => {
        node.counters.routedWrites++;
        return begin(node).then(
          (client) => ({ node, client }),
          (err: unknown) => {
            this.writeFailed(err);
            throw err;
          },
        );
      },
      'unsent',
    );
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
    const duplicate = this.topology.duplicates[0];
    if (duplicate !== undefined) {
      const [first, second, identity] = duplicate;
      const entry = (n: NodePool) => (n.config.role === 'primary' ? 'primary' : `replicas[${n.config.index}]`);
      throw new PoolConfigurationError(
        `option \`${entry(second)}\``,
        'a server that no other entry reaches',
        `${second.name} (${second.config.address}), the same server as ${first.name} (${first.config.address}): system ${identity}`,
        'Please make sure that every server is listed once (a multi-host primary already names every node), or mark load balancers with endpoint: true.',
      );
    }
    if (primaryError !== undefined && this.topology.writer === configured) throw primaryError;
    if (this.topology.lostSince !== 0) throw this.topology.unavailable();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.topology.close();
    this.#lag.stop();
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
