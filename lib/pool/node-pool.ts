import type pg from 'pg';
import type { PoolClient, QueryResult, QueryResultRow } from 'pg';
import type { ResolvedNode } from '../config/resolve-options.js';
import type { LatencyHistogram, NodeCounters } from './node-stats.js';
import { PoolEndedError, type PoolStateSnapshot } from '../pool.exceptions.js';
import type { NodeRole } from '../pool.interfaces.js';
import { Acquirer } from './acquirer.js';
import { ConnectionBag } from './connection-bag.js';
import { ConnectionFactory, REFILL_FIRST_DELAY_MS } from './connection-factory.js';
import { Housekeeper, sweepPeriodMs } from './housekeeper.js';
import { nodeBreaker, nodeFacade, nodeLeakDetector, PoolState, type PoolHost } from './pool-state.js';
import type { PooledConnection } from './pooled-connection.js';
import { Refill } from './refill.js';
import { Releaser } from './release.js';
import { RoleConnection } from './role-connection.js';
import { StatementRunner, type QueryInput } from './statement-runner.js';

/** What a node pool needs from the database that owns it. */
export type NodeHost = PoolHost<NodePool>;
export { isSingleStatement, type QueryInput } from './statement-runner.js';

export interface NodeStatus extends PoolStateSnapshot {
  min: number;
  breaker: 'closed' | 'open' | 'half-open';
  breakerRetryAt: number | undefined;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

/**
 * One server's pool, owned by the library (no pg-pool), built like HikariCP's: a bag of
 * `pg.Client` connections with its waiters (connection-bag.ts), the checkout path (acquirer.ts),
 * a connection factory (connection-factory.ts), the release rules (release.ts), the refill,
 * warm-up and housekeeping (refill.ts), one statement runner (statement-runner.ts), a circuit
 * breaker, leak detection and the role checks' own connection. `pool` is its `pg.Pool`-compatible face.
 */
export class NodePool {
  readonly pool: pg.Pool;
  readonly counters: NodeCounters;
  readonly acquireTime: LatencyHistogram;
  readonly queryTime: LatencyHistogram;
  readonly connectTime: LatencyHistogram;
  readonly usageTime: LatencyHistogram;
  readonly #s: PoolState;
  readonly #factory: ConnectionFactory;
  readonly #releaser: Releaser;
  readonly #refill: Refill;
  readonly #runner: StatementRunner;
  readonly #housekeeper: Housekeeper;
  readonly #roles: RoleConnection;
  #shuttingDown = false;

  constructor(
    readonly config: ResolvedNode,
    host: NodeHost,
  ) {
    const s = new PoolState(config, host, this);
    this.#s = s;
    this.counters = s.counters;
    this.acquireTime = s.acquireTime;
    this.queryTime = s.queryTime;
    this.connectTime = s.connectTime;
    this.usageTime = s.usageTime;
    s.bag = new ConnectionBag<PooledConnection>((waiter) => s.timeoutError(waiter.deadline - config.acquireTimeoutMs, undefined));
    s.breaker = nodeBreaker(s);
    s.leaks = nodeLeakDetector(s);
    s.factory = this.#factory = new ConnectionFactory(s);
    s.acquirer = new Acquirer(s);
    s.releaser = this.#releaser = new Releaser(s);
    s.refill = this.#refill = new Refill(s);
    this.#runner = new StatementRunner(s);
    this.#roles = new RoleConnection(s);
    const housekeeping = { min: config.min, idleTimeoutMs: config.idleTimeoutMs, queryTimeoutMs: config.queryTimeoutMs, maxLifetimeMs: config.maxLifetimeMs };
    this.#housekeeper = new Housekeeper(sweepPeriodMs(housekeeping), () => this.#refill.housekeep());
    this.#housekeeper.start();
    s.facade = nodeFacade(s, () => this.#end(this.#shuttingDown));
    this.pool = s.facade as unknown as pg.Pool;
  }

  get name(): string {
    return this.config.name;
  }

  get database(): string {
    return this.config.database;
  }

  get role(): NodeRole {
    return this.#s.role;
  }

  /** `performance.now()` of the last answer any connection of this node received. */
  get lastAnswerAt(): number {
    return this.#s.lastAnswerAt;
  }

  get inUse(): number {
    return this.#s.inUse;
  }

  get waiting(): number {
    return this.#s.bag.waiting;
  }

  get ended(): boolean {
    return this.#s.ended;
  }

  /** Statements in flight on this node's connections, and for how long the oldest has run (ms). */
  busy(perfNow = performance.now()): { statements: number; oldestMs: number } {
    let statements = 0;
    let oldest = perfNow;
    for (const conn of this.#s.bag.items()) {
      if (conn.busySince === 0) continue;
      statements++;
      if (conn.busySince < oldest) oldest = conn.busySince;
    }
    return { statements, oldestMs: perfNow - oldest };
  }

  state(): PoolStateSnapshot {
    return this.#s.state();
  }

  status(): NodeStatus {
    const breaker = this.#s.breaker;
    return { ...this.state(), min: this.config.min, breaker: breaker.state(), breakerRetryAt: breaker.retryAt };
  }

  /** Breaker closed, or open long enough for a trial. Cheap; used by routing. */
  get available(): boolean {
    return this.#s.breaker.available;
  }

  /**
   * Changes the node's role (after a failover): replicas get `default_transaction_read_only`, the
   * primary does not. Existing sessions carry the old settings, so they are retired (idle ones
   * now, lent ones when given back) and the pool refills with the new ones.
   */
  setRole(role: NodeRole): void {
    const s = this.#s;
    if (role === s.role) return;
    s.role = role;
    // The write node answered as such: a replica ban it carried must not keep it below `min`.
    if (role === 'primary') this.#refill.paused = false;
    this.#factory.setRole(role);
    this.evictAll();
  }

  // Statements and clients (statement-runner.ts) -------------------------------------------------

  /**
   * Runs one statement on a connection of this pool and always gives it back. When the server had
   * terminated the pooled session (57P01) just before, the statement runs once more on a new one.
   */
  query<R extends QueryResultRow = any>(text: QueryInput, values?: unknown[]): Promise<QueryResult<R>> {
    return this.#runner.query<R>(text, values);
  }

  /** Runs a statement on a client already taken from this pool; gives it back when `release` is set. */
  run<R extends QueryResultRow = any>(client: PoolClient, text: QueryInput, values: unknown[] | undefined, release: boolean): Promise<QueryResult<R>> {
    return this.#runner.run<R>(client, text, values, release);
  }

  /**
   * The library's own statements (probes, lag and replay checks, health pings, the sizing
   * advisor): one connection, bounded as a whole by `timeoutMs` (default `validationTimeoutMs`).
   * On timeout the connection is destroyed, never pooled again, and the statement fails with
   * `PoolStatementTimeoutError`. Counted like any statement; no acquire/release events. Goes
   * through an open breaker (it is how the library finds out a node is back).
   */
  systemQuery<R extends QueryResultRow = any>(text: string, values?: unknown[], timeoutMs: number = this.config.validationTimeoutMs): Promise<QueryResult<R>> {
    return this.#runner.systemQuery<R>(text, values, timeoutMs);
  }

  /**
   * Takes a client and opens a transaction on it with `begin` (plus, behind PgBouncer, a
   * `SET LOCAL statement_timeout`: session settings do not survive transaction pooling). When the
   * server had terminated the pooled session, it starts over once on a new connection.
   */
  begin(begin: string): Promise<PoolClient> {
    return this.#runner.begin(begin);
  }

  /**
   * Lends a client (a handle: `release()` once gives it back; any use after that throws). In a
   * scope with a session context, each of its statements runs in a transaction with the context.
   */
  acquire(): Promise<PoolClient> {
    return this.#runner.acquire();
  }

  /** `acquire()` for `pg.Pool.connect()`: the client is the connection's own shared handle, as pg-pool lends the same object each time. */
  acquireShared(): Promise<PoolClient> {
    return this.#runner.acquireShared();
  }

  /**
   * Gives a client back. A connection that failed (the error came from it) or broke is destroyed —
   * for a server shutdown the rest of the pool is soft-evicted; 25006 on the primary checks for a
   * demoted server; an open or aborted transaction is rolled back first; a retired connection is
   * closed instead of pooled. A client already given back is left alone.
   */
  release(client: PoolClient, err?: unknown): void {
    this.#runner.release(client, err);
  }

  /**
   * A statement of the role checks, bounded by `timeoutMs` as a whole, on a connection of this
   * node outside the pool (`application_name` suffixed `:roles`): an exhausted pool must not look
   * like a dead server. Counted with the library's own statements.
   */
  monitorQuery<R extends QueryResultRow = any>(text: string, timeoutMs: number): Promise<QueryResult<R>> {
    return this.#roles.query<R>(text, timeoutMs);
  }

  /**
   * A connection of this node outside the pool (the monitors'): the pool's settings with
   * `application_name` suffixed, connected within `timeoutMs`, never keeping the process alive.
   * The caller closes it.
   */
  openDetached(suffix: string, timeoutMs: number): Promise<PooledConnection> {
    return this.#factory.openDetached(suffix, timeoutMs);
  }

  // The node's health ---------------------------------------------------------------------------

  /**
   * Marks every current connection stale: idle ones are closed now, lent ones when they come
   * back; the pool then refills to `min` in the background. Used after a server restart or a failover.
   */
  evictAll(): void {
    const s = this.#s;
    s.generation++;
    for (const conn of s.bag.idleItems()) {
      s.counters.evictions++;
      s.bag.takeIdle(conn);
      void this.#releaser.remove(conn, 'evicted');
    }
    this.#refill.schedule(REFILL_FIRST_DELAY_MS);
  }

  /**
   * The node stopped answering: every statement in flight and every connect under way is aborted
   * with `err` (its connection destroyed), callers waiting for a connection get `err`, and idle
   * connections are closed.
   */
  abort(err: Error): void {
    const s = this.#s;
    s.generation++;
    s.hung = err;
    for (const conn of s.bag.items()) {
      if (s.bag.takeIdle(conn)) {
        conn.destroy(err);
        void this.#releaser.remove(conn, 'error');
      } else {
        // Lent, running a statement, or still connecting: all wait on the silent server.
        conn.destroy(err);
      }
    }
    s.bag.rejectWaiters(err);
  }

  /** The node answered the monitor again: an open breaker closes without waiting for its timeout. */
  reachable(): void {
    this.#s.hung = undefined;
    this.#s.breaker.success();
    this.#refill.schedule(0);
  }

  /**
   * Banned, or its breaker open and not yet due for a trial: only the ban's probe or the
   * breaker's trial may connect to it (the node monitor opens nothing meanwhile).
   */
  get resting(): boolean {
    const breaker = this.#s.breaker;
    return this.#refill.paused || (breaker.isOpen && !breaker.available);
  }

  /** The node is banned: the background refill waits until `resumeRefill()` (a probe succeeded). */
  pauseRefill(): void {
    this.#refill.pause();
  }

  /** The ban is lifted: the pool refills to `min` again. */
  resumeRefill(): void {
    this.#refill.resume();
  }

  // Start and end -------------------------------------------------------------------------------

  /** Opens the first connection (with backoff + jitter), then up to `min`. Throws `PoolConnectionError`. */
  warmUp(): Promise<void> {
    return this.#refill.warmUp();
  }

  /** Waits until no client is checked out, up to `timeoutMs`. Returns how many were still out. */
  async drain(timeoutMs: number): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    while (this.inUse > 0 && Date.now() < deadline) await sleep(25);
    return this.inUse;
  }

  /**
   * The module's shutdown (after `drain()`): closes every connection, checked-out ones and those
   * still opening included; later calls return the same promise.
   */
  end(): Promise<void> {
    this.#shuttingDown = true;
    // Through the pg.Pool face, as pg-pool users see a pool end; when its user already ended it, directly.
    return (this.pool.end() as Promise<void>).catch(() => this.#end(true));
  }

  /**
   * Ends the pool. The `pg.Pool` face's `end()` (`force` false) does as pg-pool does: waiters
   * fail, idle connections close, checked-out ones and those still opening are left to finish and
   * close when given back; it settles once none is left. `force` closes them too.
   */
  #end(force: boolean): Promise<void> {
    const s = this.#s;
    if (s.endPromise === undefined) {
      this.#refill.stop();
      this.#factory.stop();
      this.#housekeeper.stop();
      this.#factory.log?.('ending');
      s.endPromise = new Promise<void>((resolve) => {
        s.endResolve = resolve;
      });
      s.bag.rejectWaiters(new PoolEndedError(s.database, s.name));
      this.#roles.drop();
      for (const conn of s.bag.idleItems()) {
        s.bag.takeIdle(conn);
        void this.#releaser.remove(conn, 'shutdown');
      }
    }
    if (force && !s.forcedEnd) {
      s.forcedEnd = true;
      for (const conn of s.bag.items()) {
        // Still connecting: pg would never call back after client.end(), so its socket is destroyed.
        if (conn.connectedAt === 0) conn.destroy(new PoolEndedError(s.database, s.name));
        else void this.#releaser.remove(conn, 'shutdown');
      }
    }
    this.#releaser.settleEnd();
    return s.endPromise;
  }
}
