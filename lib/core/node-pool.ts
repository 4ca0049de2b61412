import pg from 'pg';
import type { PoolClient, PoolConfig, QueryConfig, QueryResult, QueryResultRow } from 'pg';
import type { ResolvedNode } from '../config/resolve-options.js';
import { pgPoolOptionsView } from '../config/pg-pool-names.js';
import {
  ClientReleasedError,
  NamedStatementUnsupportedError,
  PoolAcquireTimeoutError,
  PoolConnectionError,
  PoolEndedError,
  PoolServerFullError,
  PoolStatementTimeoutError,
  PoolUnavailableError,
  type PoolStateSnapshot,
} from '../pool.exceptions.js';
import type { NodeRole } from '../pool.interfaces.js';
import type { PoolEvent, RemoveReason } from '../pool.events.js';
import { AcquireQueue } from '../pool/acquire-queue.js';
import { CircuitBreaker } from '../pool/circuit-breaker.js';
import { ConnectionBag } from '../pool/connection-bag.js';
import { Housekeeper, sweep, sweepPeriodMs } from '../pool/housekeeper.js';
import { LeakDetector } from '../pool/leak-detector.js';
import { endLease, leasedConnection, lend, sharedHandle, wasReturned } from '../pool/lent-client.js';
import { PoolFacade } from '../pool/pool-facade.js';
import { PooledConnection } from '../pool/pooled-connection.js';
import { releaseAction, retireOrPool, type ReleaseContext } from '../pool/release-policy.js';
import { RESET_SESSION_SQL } from '../pool/session-reset.js';
import { CANCEL_TIMEOUT_MS, send, sendAsync, sendWithin } from '../pool/statement-deadline.js';
import { StatementCache } from '../pool/statement-cache.js';
import { routingStorage } from '../routing/routing-context.js';
import type { CompiledSessionContext } from '../session/session-context.js';
import { needsValidation, validate } from '../pool/validation.js';
import { isServerRestartError, isSessionTerminated } from './errors.js';
import { breaksConnection, classifyFailure, countsForBreaker, FailureClass } from '../errors/failure-class.js';
import { LatencyHistogram, NodeCounters } from './node-stats.js';

/** Background refill: first retry delay, doubling up to the cap, each with jitter (50–100%). */
const REFILL_FIRST_DELAY_MS = 50;
const REFILL_MAX_DELAY_MS = 500;
/** A full server (53300): opening waits this long, doubling up to the cap, while open connections keep serving. */
const FULL_FIRST_DELAY_MS = 50;
const FULL_MAX_DELAY_MS = 500;
/**
 * A single statement (or BEGIN) that fails with 57P01 this soon after it was sent is run once more
 * on a new connection: the server terminated the session before running it, or while running it
 * (rolled back, never committed). Longer-running statements are not retried, so a query an
 * operator killed on purpose is not started again.
 */
const STALE_RETRY_WINDOW_MS = 1000;
/** How long shutdown waits for one connection's socket to close before destroying it. */
const SOCKET_CLOSE_WAIT_MS = 2000;
const READ_ONLY_SETTING = '-c default_transaction_read_only=on';

export type QueryInput = string | QueryConfig;

/** pg-pool's `log` wording for a removed connection, by reason. */
const REMOVE_LOG: Partial<Record<RemoveReason, string>> = {
  'max-uses': 'remove expended client',
  lifetime: 'remove expired client',
  idle: 'remove idle client',
};

/** What a node pool needs from the database that owns it. */
export interface NodeHost {
  readonly slowQueryMs: number;
  readonly retryAttempts: number;
  readonly retryDelayMs: number;
  readonly breaker: { readonly failureThreshold: number; readonly resetTimeoutMs: number };
  /** True when someone listens to events; events are only built then. */
  readonly emitting: boolean;
  emit(event: PoolEvent): void;
  /** Runs the app's connection hook; resolves `true` when there is one (it may have changed session settings). */
  initClient(client: PoolClient, node: NodePool): Promise<boolean | void>;
  warn(message: string): void;
  scrub(message: string): string;
  /** A statement of this node got no answer within its deadline (the node may be hung). */
  statementTimedOut?(node: NodePool, err: Error): void;
  /** The node's circuit breaker opened: connections to it failed as a node that is gone (`lastFailure` is the last one's message). */
  breakerOpened?(node: NodePool, lastFailure: string): void;
  /** A session context is applied on this node (debug log; called once per context, only when `debugging`). */
  contextApplied?(node: NodePool, ctx: CompiledSessionContext): void;
  readonly debugging?: boolean;
}

export interface NodeStatus extends PoolStateSnapshot {
  min: number;
  breaker: 'closed' | 'open' | 'half-open';
  breakerRetryAt: number | undefined;
}

type Done = (err: Error | undefined, conn: PooledConnection | undefined) => void;

/** Gives an error the stack of the code awaiting it (call from a promise reaction, like pg does). */
function withCallerStack(err: unknown): never {
  if (err instanceof Error) Error.captureStackTrace(err);
  throw err;
}

/**
 * Rejects a promise (through its `resolve`) with `err`, re-anchoring the stack at the code that
 * awaits it. The chain is linked before `err` is thrown into it, so the stack walk reaches the caller.
 */
function rejectAtCaller(resolve: (value: PromiseLike<never>) => void, err: unknown): void {
  let throwIn!: (reason: unknown) => void;
  const failed = new Promise<never>((_, reject) => {
    throwIn = reject;
  });
  resolve(failed.catch(withCallerStack));
  throwIn(err);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

function statementText(text: QueryInput): string {
  return typeof text === 'string' ? text : text.text;
}

/** One statement (no `;` before the end), so running it again cannot repeat a committed part. */
export function isSingleStatement(text: QueryInput): boolean {
  return !statementText(text).trimEnd().replace(/;+$/, '').includes(';');
}

function errorMessage(err: unknown): string {
  const message = (err as { message?: unknown } | null)?.message;
  return typeof message === 'string' ? message : String(err);
}

/** `options` with the replica session setting added or taken out. */
function withReadOnly(options: string | undefined, readOnly: boolean): string | undefined {
  const rest = (options ?? '').split(READ_ONLY_SETTING).join('').replace(/\s+/g, ' ').trim();
  const next = readOnly ? `${rest} ${READ_ONLY_SETTING}`.trim() : rest;
  return next === '' ? undefined : next;
}

/**
 * One server's pool, owned by the library (no pg-pool): a bag of `pg.Client` connections, a FIFO
 * acquire queue with one deadline timer, a housekeeper (lifetimes with jitter, idle above `min`,
 * statement deadlines), validation on borrow, release hygiene, leak detection, soft eviction after
 * a server restart, a background refill to `min`, a circuit breaker and PgBouncer
 * transaction-mode rules. `pool` is its `pg.Pool`-compatible face.
 */
export class NodePool {
  readonly pool: pg.Pool;
  readonly counters = new NodeCounters();
  readonly acquireTime = new LatencyHistogram();
  readonly queryTime = new LatencyHistogram();
  readonly connectTime = new LatencyHistogram();
  readonly usageTime = new LatencyHistogram();
  /** `performance.now()` of the last answer any connection of this node received. */
  lastAnswerAt = 0;
  readonly #facade: PoolFacade;
  readonly #bag = new ConnectionBag<PooledConnection>();
  readonly #queue: AcquireQueue<PooledConnection>;
  readonly #breaker: CircuitBreaker;
  readonly #leaks: LeakDetector;
  readonly #housekeeper: Housekeeper;
  readonly #Client: typeof pg.Client;
  #clientConfig: PoolConfig;
  #role: NodeRole;
  #generation = 0;
  #endPromise: Promise<void> | undefined;
  #endResolve: (() => void) | undefined;
  #forcedEnd = false;
  #shuttingDown = false;
  /** The node's own pg-pool hooks: `onConnect(client)` (after the module's `onConnect`), `verify(client, cb)` and `log(message)`. */
  readonly #onConnect: ((client: PoolClient) => unknown) | undefined;
  readonly #verify: ((client: PoolClient, cb: (err?: Error) => void) => void) | undefined;
  readonly #log: ((message: string, ...rest: unknown[]) => void) | undefined;
  /** Sockets closing since the end. */
  readonly #closing: Promise<void>[] = [];
  #refillTimer: NodeJS.Timeout | undefined;
  #refilling = false;
  /** Connections the background refill is opening (each goes to the first waiter, or the idle stack). */
  #refillOpening = 0;
  #refillDelay = REFILL_FIRST_DELAY_MS;
  /** The node is banned (its ban lasts until a probe succeeds): no background connection until then. */
  #refillPaused = false;
  /** The warm-up retries on its own schedule: no background refill beside it. */
  #warmingUp = false;
  /** Wakes the warm-up's backoff sleep when the pool ends (no timer outlives a rejected start). */
  #wakeWarmUp: (() => void) | undefined;
  /** The server had no slot left: no connection opens before this `Date.now()`; callers use open ones. */
  #fullUntil = 0;
  #fullDelay = FULL_FIRST_DELAY_MS;
  #lastFull: PoolServerFullError | undefined;
  #fullTimer: NodeJS.Timeout | undefined;
  /** The node monitor declared the node hung (`abort`): a caller whose connection failed then gets this, not another try here. */
  #hung: Error | undefined;
  readonly #transactionSettings: string;
  /** The role checks' connection of its own (`monitorQuery`). */
  #roleConn: Promise<PooledConnection> | undefined;
  /** pg-pool's `allowExitOnIdle`: idle connections do not keep the process alive. */
  readonly #exitOnIdle: boolean;
  readonly #where: () => { database: string; node: string; address: string };
  readonly #ctx: { generation: number; maxUses: number; primary: boolean; now: number };
  /** Connections keep automatic prepared statements (off with node-postgres' `pipeline` mode: statements overlap there). */
  readonly #prepares: boolean;
  /** PgBouncer in transaction mode without protocol-level prepared statements: `QueryConfig.name` is refused. */
  readonly #refusesNames: boolean;
  /** Session state a borrower changed is reset on release (`resetOnRelease`, never behind PgBouncer with 'auto'). */
  readonly #resets: boolean;
  readonly #resetAlways: boolean;
  readonly #loggedContexts = new WeakSet<CompiledSessionContext>();

  constructor(
    readonly config: ResolvedNode,
    private readonly host: NodeHost,
  ) {
    const poolConfig = config.poolConfig;
    this.#role = config.role;
    this.#ctx = { generation: 0, maxUses: config.maxUses, primary: config.role === 'primary', now: 0 };
    const Base = (poolConfig.Client as typeof pg.Client | undefined) ?? pg.Client;
    const timezone = config.pgbouncer ? config.timezone : undefined;
    this.#Client =
      timezone === undefined
        ? Base
        : class extends Base {
            getStartupConf(): Record<string, string> {
              const conf = (Base.prototype as unknown as { getStartupConf(this: unknown): Record<string, string> }).getStartupConf.call(this);
              conf.TimeZone = timezone;
              return conf;
            }
          };
    const {
      Client: _client,
      min: _min,
      max: _max,
      idleTimeoutMillis: _idleMs,
      connectionTimeoutMillis: _ct,
      maxUses: _uses,
      onConnect,
      verify,
      log,
      ...clientConfig
    } = poolConfig as PoolConfig & {
      Client?: unknown;
      onConnect?: (client: PoolClient) => unknown;
      verify?: (client: PoolClient, cb: (err?: Error) => void) => void;
      log?: (message: string, ...rest: unknown[]) => void;
    };
    this.#onConnect = onConnect;
    this.#verify = verify;
    this.#log = log;
    this.#clientConfig = clientConfig;
    this.#prepares = config.preparedStatements.enabled && (clientConfig as { pipeline?: boolean }).pipeline !== true;
    this.#refusesNames = config.pgbouncer && !config.preparedStatements.pgbouncerProtocol;
    this.#exitOnIdle = (poolConfig as { allowExitOnIdle?: boolean }).allowExitOnIdle === true;
    this.#transactionSettings =
      config.pgbouncer && config.statementTimeoutMs > 0 ? `; SET LOCAL statement_timeout = ${config.statementTimeoutMs}` : '';
    this.#where = () => ({ database: config.database, node: config.name, address: config.address });
    const reset = config.resetOnRelease ?? 'auto';
    this.#resets = reset === 'always' || (reset === 'auto' && !config.pgbouncer);
    this.#resetAlways = reset === 'always';
    this.#queue = new AcquireQueue<PooledConnection>((waiter) => this.#timeoutError(waiter.deadline - config.acquireTimeoutMs, undefined));
    this.#breaker = new CircuitBreaker(() => this.host.breaker, {
      opened: (failures, retryAt, last, reopened) => {
        if (!reopened) {
          this.counters.breakerOpens++;
          this.host.warn(
            `Circuit breaker of "${config.database}/${config.name}" (${config.address}) opened after ${failures} consecutive connection failures ` +
              `(last: ${last}). Calls fail fast with PoolUnavailableError until ${new Date(retryAt).toISOString()} or until a background reconnect succeeds.`,
          );
        }
        if (this.host.emitting) this.#emit({ type: 'breaker-open', retryAt, failures });
        if (!reopened) this.host.breakerOpened?.(this, last);
        // The refill makes the next trial, when the breaker lets one through: no reconnect storm.
        this.#scheduleRefill(Math.max(0, retryAt - Date.now()));
      },
      closed: () => {
        if (this.host.emitting) this.#emit({ type: 'breaker-closed' });
        this.#scheduleRefill(0);
      },
    });
    this.#leaks = new LeakDetector(config.leakDetectionThresholdMs, {
      leaked: (_conn, heldMs, stack) => {
        this.counters.leaks++;
        this.host.warn(`Possible connection leak on "${config.database}/${config.name}": a client has been held for more than ${heldMs}ms. Acquired at:\n${stack}`);
        if (this.host.emitting) this.#emit({ type: 'leak', heldMs, stack });
      },
      returned: (_conn, heldMs) => {
        this.host.warn(`Previously reported leaked client of "${config.database}/${config.name}" was returned after ${heldMs}ms.`);
      },
    });
    const housekeeping = { min: config.min, idleTimeoutMs: config.idleTimeoutMs, queryTimeoutMs: config.queryTimeoutMs, maxLifetimeMs: config.maxLifetimeMs };
    this.#housekeeper = new Housekeeper(sweepPeriodMs(housekeeping), () => this.#housekeep());
    this.#housekeeper.start();
    const bag = this.#bag;
    const queue = this.#queue;
    const ended = () => this.ended;
    this.#facade = new PoolFacade({
      get totalCount() {
        return bag.total;
      },
      get idleCount() {
        return bag.idle;
      },
      get waitingCount() {
        return queue.length;
      },
      get expiredCount() {
        const now = Date.now();
        let expired = 0;
        for (const conn of bag.items()) if (conn.acquiredAt !== 0 && conn.expiresAt !== 0 && now >= conn.expiresAt) expired++;
        return expired;
      },
      get ended() {
        return ended();
      },
      get finished() {
        return ended() && bag.total === 0;
      },
      options: pgPoolOptionsView(config),
      query: (text, values) => this.query(text, values),
      acquire: () => this.acquire().then((client) => sharedHandle(leasedConnection(client)!, client)),
      end: () => this.#end(this.#shuttingDown),
    });
    this.pool = this.#facade as unknown as pg.Pool;
  }

  get name(): string {
    return this.config.name;
  }

  get role(): NodeRole {
    return this.#role;
  }

  get inUse(): number {
    return this.#bag.total - this.#bag.idle;
  }

  get waiting(): number {
    return this.#queue.length;
  }

  get ended(): boolean {
    return this.#endPromise !== undefined;
  }

  /** Statements in flight on this node's connections, and for how long the oldest has run (ms). */
  busy(perfNow = performance.now()): { statements: number; oldestMs: number } {
    let statements = 0;
    let oldest = perfNow;
    for (const conn of this.#bag.items()) {
      if (conn.busySince === 0) continue;
      statements++;
      if (conn.busySince < oldest) oldest = conn.busySince;
    }
    return { statements, oldestMs: perfNow - oldest };
  }

  state(): PoolStateSnapshot {
    const total = this.#bag.total;
    const idle = this.#bag.idle;
    return { total, idle, inUse: total - idle, waiting: this.#queue.length, max: this.config.max };
  }

  status(): NodeStatus {
    return { ...this.state(), min: this.config.min, breaker: this.#breaker.state(), breakerRetryAt: this.#breaker.retryAt };
  }

  /** Breaker closed, or open long enough for a trial. Cheap; used by routing. */
  get available(): boolean {
    return this.#breaker.available;
  }

  /**
   * Changes the node's role (after a failover): replicas get `default_transaction_read_only`, the
   * primary does not. Existing sessions carry the old settings, so they are retired (idle ones
   * now, lent ones when given back) and the pool refills with the new ones.
   */
  setRole(role: NodeRole): void {
    if (role === this.#role) return;
    this.#role = role;
    // The write node answered as such: a replica ban it carried must not keep it below `min`.
    if (role === 'primary') this.#refillPaused = false;
    const byRole = this.config.roleOptions;
    if (byRole !== undefined) this.#clientConfig = { ...this.#clientConfig, options: byRole[role] };
    else if (!this.config.pgbouncer) this.#clientConfig = { ...this.#clientConfig, options: withReadOnly(this.#clientConfig.options, role === 'replica') };
    this.evictAll();
  }

  // Borrowing ----------------------------------------------------------------------------

  /**
   * Takes a client and opens a transaction on it with `begin` (plus, behind PgBouncer, a
   * `SET LOCAL statement_timeout`: session settings do not survive transaction pooling). When the
   * server had terminated the pooled session, it starts over once on a new connection.
   */
  begin(begin: string): Promise<PoolClient> {
    const sql = begin + this.#transactionSettings;
    let ctx: CompiledSessionContext | undefined;
    try {
      ctx = this.#sessionContext();
    } catch (err) {
      return Promise.reject(err);
    }
    const opened = this.#borrow().then((conn) => this.#begin(conn, sql, true));
    return ctx === undefined ? opened : opened.then((client) => this.#applyContext(client, ctx));
  }

  /**
   * Lends a client (a handle: `release()` once gives it back; any use after that throws). In a
   * scope with a session context, each of its statements runs in a transaction with the context.
   */
  acquire(): Promise<PoolClient> {
    let ctx: CompiledSessionContext | undefined;
    try {
      ctx = this.#sessionContext();
    } catch (err) {
      return Promise.reject(err);
    }
    if (ctx === undefined) return this.#borrow().then((conn) => lend(conn, this));
    const context = { ctx, begin: `BEGIN${this.#transactionSettings}` };
    return this.#borrow().then((conn) => {
      this.#contextApplied(ctx);
      return lend(conn, this, context);
    });
  }

  /** The session context of the current scope for this database (`undefined`: none, or empty). */
  #sessionContext(): CompiledSessionContext | undefined {
    const ctx = routingStorage.getStore()?.contexts?.get(this.config.database);
    return ctx === undefined || ctx.sql === '' ? undefined : ctx;
  }

  /** Debug log: once per context (a request's, a `withSession` call's) and node. */
  #contextApplied(ctx: CompiledSessionContext): void {
    if (this.#loggedContexts.has(ctx) || this.host.debugging !== true) return;
    this.#loggedContexts.add(ctx);
    this.host.contextApplied?.(this, ctx);
  }

  /** Applies the context in the transaction just opened on `client`; gives the client back if that fails. */
  #applyContext(client: PoolClient, ctx: CompiledSessionContext): Promise<PoolClient> {
    this.#contextApplied(ctx);
    return sendAsync(leasedConnection(client)!, ctx.sql, ctx.values).then(
      () => client,
      (err: unknown) => {
        this.release(client, err);
        throw err;
      },
    );
  }

  /** One statement in a transaction with the scope's session context: BEGIN, the context, the statement, COMMIT. */
  async #queryInContext<R extends QueryResultRow>(text: QueryInput, values: unknown[] | undefined): Promise<QueryResult<R>> {
    const client = await this.begin('BEGIN');
    let failure: unknown;
    try {
      const res = await this.run<R>(client, text, values, false);
      await this.run(client, 'COMMIT', undefined, false);
      return res;
    } catch (err) {
      failure = err;
      throw err;
    } finally {
      this.release(client, failure);
    }
  }

  /** A checked-out connection, through the breaker, armed for leak detection. */
  #borrow(): Promise<PooledConnection> {
    const t0 = performance.now();
    let trial = false;
    // An open breaker stops opening connections; an idle one is still served (validated on borrow).
    if (this.#breaker.isOpen && this.#bag.idle === 0) {
      if (!this.#breaker.admit()) return Promise.reject(this.#unavailable());
      trial = true;
    }
    const mayOpen = trial || !this.#breaker.isOpen;
    // Taken here, while the caller's frames are still on the stack; formatted only if it leaks.
    const origin = this.#leaks.enabled ? new Error('Client acquired here') : undefined;
    return new Promise<PooledConnection>((resolve) => {
      this.#acquireConn(
        t0,
        t0 + this.config.acquireTimeoutMs,
        0,
        (err, conn) => {
          if (err !== undefined) {
            if (trial) this.#breaker.trialAbandoned();
            rejectAtCaller(resolve, err);
            return;
          }
          if (origin !== undefined) this.#leaks.arm(conn!, origin);
          resolve(conn!);
        },
        false,
        mayOpen,
      );
    });
  }

  /**
   * Runs one statement on a connection of this pool and always gives it back. When the server had
   * terminated the pooled session (57P01) just before, the statement runs once more on a new one.
   */
  query<R extends QueryResultRow = any>(text: QueryInput, values?: unknown[]): Promise<QueryResult<R>> {
    if (this.#refusesNames && typeof text === 'object' && text !== null && text.name) return Promise.reject(this.#namedStatement(text));
    const scope = routingStorage.getStore();
    if (scope?.contexts !== undefined) {
      try {
        if (this.#sessionContext() !== undefined) return this.#queryInContext<R>(text, values);
      } catch (err) {
        return Promise.reject(err);
      }
    }
    if (this.#breaker.isOpen && this.#bag.idle === 0) return this.#borrow().then((conn) => this.#executeAsync<R>(conn, text, values, true));
    const mayOpen = !this.#breaker.isOpen;
    const t0 = performance.now();
    const origin = this.#leaks.enabled ? new Error('Client acquired here') : undefined;
    return new Promise<QueryResult<R>>((resolve) => {
      this.#acquireConn(
        t0,
        t0 + this.config.acquireTimeoutMs,
        0,
        (err, conn) => {
          if (err !== undefined) {
            rejectAtCaller(resolve, err);
            return;
          }
          if (origin !== undefined) this.#leaks.arm(conn!, origin);
          this.#execute<R>(conn!, text, values, true, resolve);
        },
        false,
        mayOpen,
      );
    });
  }

  /** Runs a statement on a client already taken from this pool; gives it back when `release` is set. */
  run<R extends QueryResultRow = any>(client: PoolClient, text: QueryInput, values: unknown[] | undefined, release: boolean): Promise<QueryResult<R>> {
    const conn = leasedConnection(client);
    if (conn === undefined) {
      return Promise.reject(wasReturned(client) ? new ClientReleasedError(this.config.database, this.name, 'query()') : new TypeError('Cannot run a statement on a client this pool did not lend.'));
    }
    if (this.#refusesNames && typeof text === 'object' && text !== null && text.name) {
      const err = this.#namedStatement(text);
      if (release) this.release(client);
      return Promise.reject(err);
    }
    if (release) {
      endLease(client);
      return this.#executeAsync<R>(conn, text, values, false);
    }
    this.counters.queries++;
    conn.note(text);
    if (conn.broken && conn.brokenBy !== undefined) {
      // The server ended this connection between two statements of a transaction: report why
      // (e.g. 57P01) rather than the driver's "not queryable".
      this.counters.queryErrors++;
      return Promise.reject(conn.brokenBy);
    }
    const t0 = performance.now();
    return new Promise<QueryResult<R>>((resolve, reject) => {
      send<R>(conn, text, values, (err, res) => {
        this.#queryDone(t0, text);
        if (err !== undefined) {
          this.counters.queryErrors++;
          reject(err);
        } else resolve(res!);
      }, this);
    });
  }

  /**
   * The library's own statements (probes, lag and replay checks, health pings, the sizing
   * advisor): one connection, bounded as a whole by `timeoutMs` (default `validationTimeoutMs`).
   * On timeout the connection is destroyed, never pooled again, and the statement fails with
   * `PoolStatementTimeoutError`. Counted like any statement; no acquire/release events. Goes
   * through an open breaker (it is how the library finds out a node is back).
   */
  systemQuery<R extends QueryResultRow = any>(text: string, values?: unknown[], timeoutMs: number = this.config.validationTimeoutMs): Promise<QueryResult<R>> {
    const t0 = performance.now();
    this.counters.systemQueries++;
    return new Promise<QueryResult<R>>((resolve, reject) => {
      this.#acquireConn(t0, t0 + Math.min(timeoutMs, this.config.acquireTimeoutMs), 0, (err, conn) => {
        if (err !== undefined) {
          reject(err);
          return;
        }
        const left = Math.max(1, Math.ceil(timeoutMs - (performance.now() - t0)));
        const started = performance.now();
        this.counters.queries++;
        sendWithin<R>(conn!, text, values, left, this.#where).then(
          (res) => {
            this.#queryDone(started, text);
            this.#releaseConn(conn!, undefined, true);
            resolve(res);
          },
          (failure: Error) => {
            this.#queryDone(started, text);
            this.counters.queryErrors++;
            if (failure instanceof PoolStatementTimeoutError) this.#timedOut(failure);
            this.#releaseConn(conn!, failure, true);
            reject(failure);
          },
        );
      }, true);
    });
  }

  /**
   * Gives a client back. A connection that failed (the error came from it) or broke is destroyed —
   * for a server shutdown the rest of the pool is soft-evicted; 25006 on the primary checks for a
   * demoted server; an open or aborted transaction is rolled back first; a retired connection is
   * closed instead of pooled. A client already given back is left alone.
   */
  release(client: PoolClient, err?: unknown): void {
    const conn = endLease(client);
    if (conn !== undefined) this.#releaseConn(conn, err, false);
  }

  /** `LendingPool`: `release(err?)` called on a lent handle (pg-pool's rule: a truthy error destroys it). */
  giveBackLent(conn: PooledConnection, err: unknown, destroy: boolean): void {
    if (destroy && !conn.broken) {
      conn.markBroken(err !== null && typeof err === 'object' ? err : new Error('released with an error'));
      conn.removeReason = 'error';
    }
    this.#releaseConn(conn, err, false);
  }

  get database(): string {
    return this.config.database;
  }

  /**
   * Marks every current connection stale: idle ones are closed now, lent ones when they come
   * back; the pool then refills to `min` in the background. Used after a server restart or a failover.
   */
  evictAll(): void {
    this.#generation++;
    for (const conn of this.#bag.idleItems()) {
      this.counters.evictions++;
      this.#bag.takeIdle(conn);
      this.#remove(conn, 'evicted');
    }
    this.#scheduleRefill(REFILL_FIRST_DELAY_MS);
  }

  /**
   * The node stopped answering: every statement in flight and every connect under way is aborted
   * with `err` (its connection destroyed), callers waiting for a connection get `err`, and idle
   * connections are closed.
   */
  abort(err: Error): void {
    this.#generation++;
    this.#hung = err;
    for (const conn of this.#bag.items()) {
      if (this.#bag.takeIdle(conn)) {
        conn.destroy(err);
        this.#remove(conn, 'error');
      } else {
        // Lent, running a statement, or still connecting: all wait on the silent server.
        conn.destroy(err);
      }
    }
    this.#queue.rejectAll(err);
  }

  /** The node answered the monitor again: an open breaker closes without waiting for its timeout. */
  reachable(): void {
    this.#hung = undefined;
    this.#breaker.success();
    this.#scheduleRefill(0);
  }

  /**
   * Banned, or its breaker open and not yet due for a trial: only the ban's probe or the
   * breaker's trial may connect to it (the node monitor opens nothing meanwhile).
   */
  get resting(): boolean {
    return this.#refillPaused || (this.#breaker.isOpen && !this.#breaker.available);
  }

  /** The node is banned: the background refill waits until `resumeRefill()` (a probe succeeded). */
  pauseRefill(): void {
    this.#refillPaused = true;
    clearTimeout(this.#refillTimer);
    this.#refillTimer = undefined;
  }

  /** The ban is lifted: the pool refills to `min` again. */
  resumeRefill(): void {
    if (!this.#refillPaused) return;
    this.#refillPaused = false;
    this.#refillDelay = REFILL_FIRST_DELAY_MS;
    this.#scheduleRefill(0);
  }

  /** Opens the first connection (with backoff + jitter), then up to `min`. Throws `PoolConnectionError`. */
  async warmUp(): Promise<void> {
    this.#warmingUp = true;
    try {
      await this.#warmUp();
    } finally {
      this.#warmingUp = false;
      this.#wakeWarmUp = undefined;
      // Whatever the warm-up could not open (a replica that failed is banned, which pauses this;
      // an ended pool refills nothing).
      this.#scheduleRefill(REFILL_FIRST_DELAY_MS);
    }
  }

  async #warmUp(): Promise<void> {
    const attempts = this.host.retryAttempts;
    let delay = this.host.retryDelayMs;
    let lastError = '';
    for (let attempt = 1; attempt <= attempts; attempt++) {
      try {
        this.release(await this.acquire());
        lastError = '';
        break;
      } catch (err) {
        lastError = this.host.scrub(errorMessage(err)).replace(/\.$/, '');
        if (this.ended) break;
        if (attempt < attempts) {
          this.host.warn(
            `Connecting to "${this.config.database}/${this.name}" at ${this.config.address} failed (attempt ${attempt}/${attempts}): ${lastError}. Retrying in ${delay}ms.`,
          );
          await this.#backOff(delay * (0.8 + Math.random() * 0.4));
          if (this.ended) break;
          delay = Math.min(delay * 2, 30_000);
        }
      }
    }
    if (lastError) {
      throw new PoolConnectionError(this.config.database, this.name, this.config.address, attempts, lastError);
    }
    // Holding `min` clients at once opens `min` connections: an idle one is reused by the first acquire.
    if (this.config.min > this.#bag.total && !this.ended) {
      const clients = await Promise.allSettled(Array.from({ length: this.config.min }, () => this.acquire()));
      for (const r of clients) if (r.status === 'fulfilled') this.release(r.value);
    }
  }

  /**
   * The warm-up's wait between two attempts; `#end()` cuts it short. Not `unref()`'d: while the
   * start is retrying nothing else may keep the process alive, and an application that cannot
   * start must end with the error (non-zero), not exit 0 in the middle of its retries.
   */
  #backOff(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.#wakeWarmUp = undefined;
        resolve();
      }, ms);
      this.#wakeWarmUp = () => {
        clearTimeout(timer);
        resolve();
      };
    });
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
    if (this.#endPromise === undefined) {
      clearTimeout(this.#refillTimer);
      this.#refillTimer = undefined;
      clearTimeout(this.#fullTimer);
      this.#wakeWarmUp?.();
      this.#housekeeper.stop();
      this.#log?.('ending');
      this.#endPromise = new Promise<void>((resolve) => {
        this.#endResolve = resolve;
      });
      this.#queue.rejectAll(new PoolEndedError(this.config.database, this.name));
      if (this.#roleConn !== undefined) this.#dropRoleConn(this.#roleConn);
      for (const conn of this.#bag.idleItems()) {
        this.#bag.takeIdle(conn);
        void this.#remove(conn, 'shutdown');
      }
    }
    if (force && !this.#forcedEnd) {
      this.#forcedEnd = true;
      for (const conn of this.#bag.items()) {
        // Still connecting: pg would never call back after client.end(), so its socket is destroyed.
        if (conn.connectedAt === 0) conn.destroy(new PoolEndedError(this.config.database, this.name));
        else void this.#remove(conn, 'shutdown');
      }
    }
    this.#settleEnd();
    return this.#endPromise;
  }

  /** After an end: once no connection is left, the end settles when their sockets closed. */
  #settleEnd(): void {
    const resolve = this.#endResolve;
    if (resolve === undefined || this.#bag.total !== 0) return;
    this.#endResolve = undefined;
    void Promise.all(this.#closing).then(() => resolve());
  }

  /**
   * A statement of the role checks, bounded by `timeoutMs` as a whole, on a connection of this
   * node outside the pool (`application_name` suffixed `:roles`): an exhausted pool must not look
   * like a dead server. A connection that times out or breaks is dropped; the next check opens a
   * new one. It never keeps the process alive. Counted with the library's own statements.
   */
  monitorQuery<R extends QueryResultRow = any>(text: string, timeoutMs: number): Promise<QueryResult<R>> {
    if (this.#endPromise !== undefined) return Promise.reject(new PoolEndedError(this.config.database, this.name));
    const t0 = performance.now();
    this.counters.systemQueries++;
    let opening = this.#roleConn;
    if (opening === undefined) {
      opening = this.openDetached(':roles', timeoutMs).then((conn) => {
        // A new connection reached the server: an open breaker closes and the pool refills now,
        // rather than at its next trial (the role checks are the one low-rate probe of a down node).
        this.reachable();
        return conn;
      });
      this.#roleConn = opening;
      opening.catch(() => this.#dropRoleConn(opening!));
    }
    const used = opening;
    return used.then((conn) => {
      if (conn.broken) {
        this.#dropRoleConn(used);
        return this.monitorQuery<R>(text, Math.max(1, timeoutMs - (performance.now() - t0)));
      }
      const left = Math.max(1, Math.ceil(timeoutMs - (performance.now() - t0)));
      return sendWithin<R>(conn, text, undefined, left, this.#where).catch((err: unknown) => {
        if (conn.broken || breaksConnection(err)) this.#dropRoleConn(used);
        throw err;
      });
    });
  }

  #dropRoleConn(conn: Promise<PooledConnection>): void {
    if (this.#roleConn !== conn) return;
    this.#roleConn = undefined;
    conn.then(
      (c) => void c.close(0),
      () => undefined,
    );
  }

  /**
   * A connection of this node outside the pool (the monitors'): the pool's settings with
   * `application_name` suffixed, connected within `timeoutMs`, never keeping the process alive.
   * The caller closes it.
   */
  openDetached(suffix: string, timeoutMs: number): Promise<PooledConnection> {
    const appName = String(this.#clientConfig.application_name ?? 'nestjs-pg-pools');
    const conn = new PooledConnection(
      { ...this.#clientConfig, application_name: `${appName}${suffix}`.slice(0, 63) },
      this.#Client,
      this.#generation,
      () => undefined,
    );
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => conn.destroy(new Error(`connect timed out after ${timeoutMs}ms`)), timeoutMs);
      timer.unref();
      conn.client.connect((err?: Error) => {
        clearTimeout(timer);
        if (err || conn.broken) {
          conn.destroy(err ?? new Error('connect failed'));
          reject(conn.abortedBy ?? err);
          return;
        }
        conn.opened(Date.now(), 0);
        // A background connection (the monitors') never keeps the process alive.
        (conn.client as unknown as { unref(): void }).unref();
        resolve(conn);
      });
    });
  }

  // The pool core -----------------------------------------------------------------------------

  /** Finds a connection for a caller (idle, new, or by waiting) and checks it out; `done` gets it or the error. */
  #acquireConn(t0: number, deadline: number, attempt: number, done: Done, quiet = false, mayOpen = true): void {
    if (this.#endPromise !== undefined) {
      done(new PoolEndedError(this.config.database, this.name), undefined);
      return;
    }
    const conn = this.#bag.take();
    if (conn !== undefined) {
      this.#checkout(conn, t0, deadline, attempt, done, quiet, mayOpen);
      return;
    }
    // A connection the refill is opening goes to the first waiter: wait for it rather than open one more.
    // A caller let through an open breaker only because a connection was idle opens nothing.
    if (!mayOpen) {
      done(this.#unavailable(), undefined);
      return;
    }
    const opening = this.#bag.total < this.config.max ? this.#opening() : 'wait';
    if (opening instanceof PoolServerFullError) {
      done(opening, undefined);
      return;
    }
    if (opening === 'open' && this.#bag.total < this.config.max && this.#refillOpening <= this.#queue.length) {
      this.#open(t0, deadline, (err, fresh) => {
        if (err === undefined) this.#handOut(fresh!, t0, done, quiet);
        // A full server: wait for one of the open connections to come back rather than fail.
        else if (err instanceof PoolServerFullError && this.inUse > 0 && !this.ended) this.#await(t0, deadline, attempt, done, quiet, mayOpen);
        else done(err, undefined);
      });
      return;
    }
    this.#await(t0, deadline, attempt, done, quiet, mayOpen);
  }

  /** Queues the caller for the next connection given back (or opened for it), until `deadline`. */
  #await(t0: number, deadline: number, attempt: number, done: Done, quiet: boolean, mayOpen: boolean): void {
    this.#queue.push(deadline, (err, pooled) => (err !== undefined ? done(err, undefined) : this.#checkout(pooled!, t0, deadline, attempt, done, quiet, mayOpen)));
  }

  #checkout(conn: PooledConnection, t0: number, deadline: number, attempt: number, done: Done, quiet: boolean, mayOpen: boolean): void {
    const now = Date.now();
    if (conn.broken || conn.generation !== this.#generation || (conn.expiresAt !== 0 && now >= conn.expiresAt)) {
      const reason: RemoveReason = conn.broken ? 'error' : conn.generation !== this.#generation ? 'evicted' : 'lifetime';
      if (!conn.broken) this.counters.evictions++;
      this.#remove(conn, reason);
      this.#retry(t0, deadline, attempt, done, quiet, mayOpen);
      return;
    }
    if (needsValidation(conn, now, this.config.validateIdleAfterMs)) {
      const bound = Math.max(1, Math.min(this.config.validationTimeoutMs, Math.ceil(this.config.acquireTimeoutMs / 2)));
      conn.acquiredAt = now;
      validate(conn, bound, this.#where).then(
        () => this.#handOut(conn, t0, done, quiet),
        (err: unknown) => {
          conn.acquiredAt = 0;
          this.counters.validationFailures++;
          if (this.host.emitting) this.#emit({ type: 'error', kind: 'validation', message: this.host.scrub(errorMessage(err)) });
          this.#remove(conn, 'validation');
          this.#retry(t0, deadline, attempt, done, quiet, mayOpen);
        },
      );
      return;
    }
    this.#handOut(conn, t0, done, quiet);
  }

  #retry(t0: number, deadline: number, attempt: number, done: Done, quiet: boolean, mayOpen: boolean): void {
    // The node was declared hung while this caller was validating or checking out: it fails over
    // now (a read is retried elsewhere) rather than opening a connection to the silent server.
    if (this.#hung !== undefined) {
      done(this.#hung, undefined);
      return;
    }
    if (attempt >= this.config.max + 1) {
      done(new PoolConnectionError(this.config.database, this.name, this.config.address, attempt, 'every pooled connection was stale'), undefined);
      return;
    }
    if (performance.now() >= deadline) {
      done(this.#timeoutError(t0, undefined), undefined);
      return;
    }
    this.#acquireConn(t0, deadline, attempt + 1, done, quiet, mayOpen);
  }

  #handOut(conn: PooledConnection, t0: number, done: Done, quiet: boolean): void {
    conn.acquiredAt = Date.now();
    conn.uses++;
    if (this.#resetAlways && !quiet) conn.dirty = true;
    if (this.#exitOnIdle) (conn.client as unknown as { ref(): void }).ref();
    if (!this.#breaker.clean) this.#breaker.success();
    if (!quiet) {
      this.counters.acquired++;
      const waited = performance.now() - t0;
      this.acquireTime.record(waited);
      if (this.host.emitting) this.#emit({ type: 'acquire', waitMs: waited });
      if (this.#facade.heard) this.#facade.emit('acquire', sharedHandle(conn));
    }
    done(undefined, conn);
  }

  /** Opens a new connection for one caller, within `connectTimeoutMs` and the caller's deadline. */
  #open(t0: number, deadline: number, done: Done, background = false): void {
    this.#log?.('connecting new client');
    const conn = new PooledConnection(this.#clientConfig, this.#Client, this.#generation, (c, err) => this.#onClientError(c, err));
    if (this.#prepares) conn.statements = new StatementCache(this.config.preparedStatements, this.counters, () => (conn.expiresAt = Date.now()));
    this.#bag.add(conn);
    const started = performance.now();
    const budget = Math.max(1, Math.ceil(Math.min(this.config.connectTimeoutMs, deadline - started)));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      conn.destroy(new Error(`connection timeout: no answer from the server within ${budget}ms`));
    }, budget);
    timer.unref();
    conn.client.connect((err?: Error) => {
      clearTimeout(timer);
      // After a user's end() the caller still gets its connection (pg-pool lets it finish); after the module's shutdown it fails.
      if (err || timedOut || conn.broken || (this.ended && (background || this.#forcedEnd))) {
        this.#bag.remove(conn);
        void conn.close(0);
        const failure = this.ended
          ? new PoolEndedError(this.config.database, this.name)
          : timedOut
            ? this.#connectTimeout(t0, conn.abortedBy, background)
            : this.#connectFailed(conn.abortedBy ?? err ?? conn.brokenBy, background);
        this.#log?.('client failed to connect', failure);
        done(failure, undefined);
        this.#pulse();
        this.#settleEnd();
        return;
      }
      conn.opened(Date.now(), this.config.maxLifetimeMs);
      this.#slotsAgain();
      this.#hung = undefined;
      if (conn.expiresAt !== 0) this.#armLifetime(conn);
      this.counters.created++;
      this.lastAnswerAt = performance.now();
      const ms = this.lastAnswerAt - started;
      this.connectTime.record(ms);
      if (this.host.emitting) this.#emit({ type: 'connect', durationMs: ms });
      if (this.#facade.heard) this.#facade.emit('connect', sharedHandle(conn));
      this.#log?.('new client connected');
      this.host.initClient(conn.client as unknown as PoolClient, this).then(
        (hooked) => {
          conn.hooked = hooked === true;
          return this.#ownHooks(conn);
        },
      ).then(
        () => done(undefined, conn),
        (initError: Error) => {
          this.#remove(conn, 'error');
          done(initError, undefined);
        },
      );
    });
  }

  /** The node's own pg-pool hooks on a new connection: `verify(client, cb)`, then `onConnect(client)`. */
  #ownHooks(conn: PooledConnection): Promise<unknown> | undefined {
    const verify = this.#verify;
    const onConnect = this.#onConnect;
    if (verify === undefined && onConnect === undefined) return undefined;
    const client = sharedHandle(conn);
    const verified = verify === undefined ? Promise.resolve() : new Promise<void>((resolve, reject) => verify(client, (err) => (err ? reject(err) : resolve())));
    return onConnect === undefined ? verified : verified.then(() => onConnect(client));
  }

  /** Retires the connection at its (jittered) lifetime if it is idle then; a lent one retires when given back. */
  #armLifetime(conn: PooledConnection): void {
    const timer = setTimeout(() => {
      if (this.ended || !this.#bag.takeIdle(conn)) return;
      this.counters.evictions++;
      void this.#remove(conn, 'lifetime');
    }, conn.expiresAt - Date.now());
    timer.unref();
    conn.lifetimeTimer = timer;
  }

  #connectTimeout(t0: number, cause: unknown, background: boolean): PoolAcquireTimeoutError {
    const timeoutError = this.#timeoutError(t0, cause);
    (timeoutError as { connectionError?: boolean }).connectionError = true;
    this.counters.connectionErrors++;
    if (!background) this.#breaker.failure(this.host.scrub(errorMessage(cause)));
    this.#scheduleRefill(REFILL_FIRST_DELAY_MS);
    return timeoutError;
  }

  #connectFailed(err: unknown, background: boolean): Error {
    const failure = (err !== null && typeof err === 'object' ? err : new Error(String(err))) as Error;
    failure.message = this.host.scrub(failure.message);
    const cls = classifyFailure(failure);
    if (cls === FailureClass.ServerFull) return this.#serverFull(failure);
    if (cls === FailureClass.NodeGone || cls === FailureClass.RoleChange) {
      this.counters.connectionErrors++;
      if (!background && cls === FailureClass.NodeGone) this.#breaker.failure(failure.message);
      if (this.host.emitting) this.#emit({ type: 'error', kind: 'connection', message: failure.message });
      this.#scheduleRefill(REFILL_FIRST_DELAY_MS);
    }
    return failure;
  }

  /**
   * A connect met 53300 / 53400: not a dead node (no breaker, no ban). Opening backs off (50 ms
   * doubling to 500 ms) while callers are served from open connections; counted and reported.
   */
  #serverFull(cause: Error): PoolServerFullError {
    const now = Date.now();
    const first = this.#fullUntil === 0;
    this.counters.serverFull++;
    this.#fullUntil = now + this.#fullDelay * (0.5 + Math.random() * 0.5);
    this.#fullDelay = Math.min(this.#fullDelay * 2, FULL_MAX_DELAY_MS);
    const err = new PoolServerFullError(this.config.database, this.name, this.config.address, cause.message, cause);
    this.#lastFull = err;
    if (first) this.host.warn(err.message);
    if (this.host.emitting) this.#emit({ type: 'error', kind: 'server-full', message: err.message });
    if (this.#fullTimer === undefined) {
      this.#fullTimer = setTimeout(() => {
        this.#fullTimer = undefined;
        this.#pulse();
      }, this.#fullUntil - now);
      this.#fullTimer.unref();
    }
    return err;
  }

  /** A connection opened: a full server has slots again. */
  #slotsAgain(): void {
    if (this.#fullUntil === 0) return;
    this.#fullUntil = 0;
    this.#fullDelay = FULL_FIRST_DELAY_MS;
    this.#lastFull = undefined;
  }

  /** Opening backs off after a full server; the error to give a caller who has no open connection to wait for. */
  #opening(): 'open' | 'wait' | PoolServerFullError {
    if (this.#fullUntil === 0 || Date.now() >= this.#fullUntil) return 'open';
    return this.inUse > 0 ? 'wait' : this.#lastFull!;
  }

  /** After a connection left: a waiter may now get a new one. */
  #pulse(): void {
    if (this.ended) return;
    if (this.#queue.length !== 0 && this.#opening() !== 'open') return;
    while (this.#queue.length !== 0 && this.#bag.total < this.config.max) {
      const waiter = this.#queue.shift()!;
      this.#open(performance.now(), waiter.deadline, waiter.callback);
    }
    if (this.#bag.total < this.config.min) this.#scheduleRefill(0);
  }

  /** Pools a connection again: straight to the oldest waiter, else on top of the idle stack. */
  #pool(conn: PooledConnection): void {
    if (this.ended) {
      void this.#remove(conn, 'shutdown');
      return;
    }
    conn.lastReleasedAt = Date.now();
    const waiter = this.#queue.shift();
    if (waiter !== undefined) waiter.callback(undefined, conn);
    else {
      if (this.#exitOnIdle) (conn.client as unknown as { unref(): void }).unref();
      this.#bag.put(conn);
    }
  }

  /** Takes a connection out of the pool and closes it (destroying it when broken). */
  #remove(conn: PooledConnection, reason: RemoveReason): Promise<void> {
    clearTimeout(conn.lifetimeTimer);
    if (!this.#bag.remove(conn)) return conn.close(0);
    conn.removeReason ??= reason;
    this.counters.removed++;
    if (this.#log !== undefined) this.#log(REMOVE_LOG[conn.removeReason] ?? `remove client (${conn.removeReason})`);
    if (conn.leakTimer !== undefined) this.#leaks.clear(conn, Date.now());
    if (this.host.emitting) this.#emit({ type: 'remove', reason: conn.removeReason });
    if (this.#facade.heard) this.#facade.emit('remove', sharedHandle(conn));
    const closed = conn.broken ? (conn.destroy(conn.abortedBy ?? new Error('connection broken')), conn.close(0)) : conn.close(SOCKET_CLOSE_WAIT_MS);
    this.#pulse();
    if (this.ended) {
      this.#closing.push(closed);
      this.#settleEnd();
    }
    return closed;
  }

  #releaseConn(conn: PooledConnection, err: unknown, quiet: boolean): void {
    const now = Date.now();
    if (!quiet) {
      this.counters.released++;
      if (conn.acquiredAt !== 0) {
        this.usageTime.record(now - conn.acquiredAt);
        if (this.host.emitting) this.#emit({ type: 'release', heldMs: now - conn.acquiredAt });
      }
      if (this.#facade.heard) this.#facade.emit('release', err !== null && typeof err === 'object' ? err : undefined, sharedHandle(conn));
    }
    if (conn.leakTimer !== undefined) this.#leaks.clear(conn, now);
    conn.acquiredAt = 0;
    if (this.ended || !this.#bag.has(conn)) {
      void this.#remove(conn, 'shutdown');
      return;
    }
    const action = releaseAction(conn, err, this.#releaseContext(now));
    switch (action.kind) {
      case 'pool':
        this.#poolClean(conn);
        return;
      case 'retire':
        this.counters.evictions++;
        void this.#remove(conn, action.reason);
        return;
      case 'destroy': {
        const cause = conn.brokenBy ?? err;
        if (action.connectionError) this.counters.connectionErrors++;
        void this.#remove(conn, action.reason);
        if (isServerRestartError(cause)) this.evictAll();
        return;
      }
      case 'rollback':
        this.#rollbackAndRelease(conn);
        return;
      case 'check-demoted':
        this.#checkDemoted(conn);
        return;
    }
  }

  /** The release rules' inputs, in one reused object (no allocation per release). */
  #releaseContext(now: number): ReleaseContext {
    const ctx = this.#ctx;
    ctx.generation = this.#generation;
    ctx.primary = this.#role === 'primary';
    ctx.now = now;
    return ctx;
  }

  /** ROLLBACK bounded by `validationTimeoutMs`: a connection that cannot roll back is closed. */
  #rollbackAndRelease(conn: PooledConnection): void {
    this.counters.rollbacksOnRelease++;
    sendWithin(conn, 'ROLLBACK', undefined, this.config.validationTimeoutMs, this.#where).then(
      () => this.#settle(conn),
      (err: unknown) => {
        if (err instanceof PoolStatementTimeoutError) this.#timedOut(err);
        this.counters.evictions++;
        void this.#remove(conn, 'rollback-failed');
      },
    );
  }

  /** Pools a connection, after resetting the session state its borrower may have changed. */
  #poolClean(conn: PooledConnection): void {
    if (!conn.dirty) {
      this.#pool(conn);
      return;
    }
    conn.dirty = false;
    if (!this.#resets) {
      this.#pool(conn);
      return;
    }
    this.#resetSession(conn).then(
      () => {
        this.counters.sessionResets++;
        if (this.ended || !this.#bag.has(conn)) void this.#remove(conn, 'shutdown');
        else this.#pool(conn);
      },
      (err: unknown) => {
        if (err instanceof PoolStatementTimeoutError) this.#timedOut(err);
        this.counters.evictions++;
        if (this.host.emitting) this.#emit({ type: 'error', kind: 'query', message: `session reset failed: ${this.host.scrub(errorMessage(err))}` });
        void this.#remove(conn, 'reset-failed');
      },
    );
  }

  /**
   * `DISCARD ALL` step by step (the statement cache survives), bounded by `validationTimeoutMs`;
   * then the connection hook runs again, so what it set up is back.
   */
  #resetSession(conn: PooledConnection): Promise<unknown> {
    const reset = sendWithin(conn, RESET_SESSION_SQL, undefined, this.config.validationTimeoutMs, this.#where);
    return conn.hooked ? reset.then(() => this.host.initClient(conn.client as unknown as PoolClient, this)) : reset;
  }

  /** After a clean rollback or recovery check: retire or pool. */
  #settle(conn: PooledConnection): void {
    if (this.ended || !this.#bag.has(conn)) return;
    const action = retireOrPool(conn, this.#releaseContext(Date.now()));
    if (action.kind === 'pool') this.#poolClean(conn);
    else {
      this.counters.evictions++;
      void this.#remove(conn, action.kind === 'retire' ? action.reason : 'error');
    }
  }

  /**
   * 25006 from the primary: a read-only transaction the caller asked for, or a demoted server.
   * Asks the server on the same connection (bounded); if it is in recovery, every connection is
   * evicted so new ones (re-resolving the host) reach the current primary.
   */
  #checkDemoted(conn: PooledConnection): void {
    const bound = this.config.validationTimeoutMs;
    const tx = conn.client.getTransactionStatus?.() ?? null;
    const rollback = tx === 'T' || tx === 'E' ? sendWithin(conn, 'ROLLBACK', undefined, bound, this.#where) : Promise.resolve();
    rollback
      .then(() => sendWithin<{ recovering: boolean }>(conn, 'SELECT pg_is_in_recovery() AS recovering', undefined, bound, this.#where))
      .then(
        (res) => {
          if (res.rows[0]?.recovering !== true) {
            this.#settle(conn);
            return;
          }
          this.counters.demotions++;
          this.counters.evictions++;
          void this.#remove(conn, 'evicted');
          const message =
            `The primary "${this.config.database}/${this.name}" (${this.config.address}) is in recovery (read-only): it was demoted. ` +
            'Every connection of its pool is closed so new ones reach the current primary.';
          this.host.warn(message);
          if (this.host.emitting) this.#emit({ type: 'error', kind: 'read-only', message });
          this.evictAll();
        },
        () => {
          void this.#remove(conn, 'error');
        },
      );
  }

  #onClientError(conn: PooledConnection, err: unknown): void {
    if (!this.#bag.takeIdle(conn)) return;
    this.counters.idleErrors++;
    if (this.host.emitting) this.#emit({ type: 'error', kind: 'idle-client', message: this.host.scrub(errorMessage(err)) });
    if (this.#facade.heard && this.#facade.listenerCount('error') !== 0) {
      const client = sharedHandle(conn);
      if (err !== null && typeof err === 'object') (err as { client?: unknown }).client = client;
      this.#facade.emit('error', err, client);
    }
    void this.#remove(conn, 'error');
    if (isServerRestartError(err)) this.evictAll();
  }

  #housekeep(): void {
    if (this.ended) return;
    const perfNow = performance.now();
    const result = sweep(this.#bag.idleItems(), this.#bag.items(), this.#bag.total, this.config, Date.now(), perfNow);
    for (const [conn, reason] of result.retire) {
      if (!this.#bag.takeIdle(conn)) continue;
      if (reason === 'lifetime') this.counters.evictions++;
      void this.#remove(conn, reason);
    }
    for (const conn of result.overdue) {
      const err = new PoolStatementTimeoutError(this.config.database, this.name, this.config.address, this.config.queryTimeoutMs, 'the statement in flight');
      void conn.abandon(err, CANCEL_TIMEOUT_MS);
      this.#timedOut(err);
    }
    // A lazy pool that never connected stays empty until its first use.
    if (this.#bag.total < this.config.min && this.counters.created > 0) this.#scheduleRefill(0);
  }

  #timedOut(err: Error): void {
    this.counters.statementTimeouts++;
    if (this.host.emitting) this.#emit({ type: 'error', kind: 'query', message: err.message });
    this.host.statementTimedOut?.(this, err);
  }

  #execute<R extends QueryResultRow>(conn: PooledConnection, text: QueryInput, values: unknown[] | undefined, retry: boolean, resolve: (value: QueryResult<R> | PromiseLike<QueryResult<R>>) => void): void {
    const started = performance.now();
    this.counters.queries++;
    conn.note(text);
    send<R>(conn, text, values, (err, res) => {
      const ms = this.#queryDone(started, text);
      if (err === undefined) {
        this.#releaseConn(conn, undefined, false);
        resolve(res!);
        return;
      }
      this.counters.queryErrors++;
      this.#releaseConn(conn, err, false);
      if (retry && ms < STALE_RETRY_WINDOW_MS && isSessionTerminated(err) && isSingleStatement(text)) {
        this.counters.staleRetries++;
        this.#borrow().then(
          (fresh) => this.#execute<R>(fresh, text, values, false, resolve),
          (failure: unknown) => rejectAtCaller(resolve, failure),
        );
        return;
      }
      rejectAtCaller(resolve, err);
    }, this);
  }

  #executeAsync<R extends QueryResultRow>(conn: PooledConnection, text: QueryInput, values: unknown[] | undefined, retry: boolean): Promise<QueryResult<R>> {
    return new Promise<QueryResult<R>>((resolve) => this.#execute<R>(conn, text, values, retry, resolve));
  }

  #begin(conn: PooledConnection, sql: string, retry: boolean): Promise<PoolClient> {
    const t0 = performance.now();
    this.counters.queries++;
    return new Promise<PoolClient>((resolve, reject) => {
      send(conn, sql, undefined, (err) => {
        const ms = this.#queryDone(t0, sql);
        if (err === undefined) {
          resolve(lend(conn, this));
          return;
        }
        this.counters.queryErrors++;
        this.#releaseConn(conn, err, false);
        if (retry && ms < STALE_RETRY_WINDOW_MS && isSessionTerminated(err)) {
          this.counters.staleRetries++;
          this.#borrow()
            .then((fresh) => this.#begin(fresh, sql, false))
            .then(resolve, reject);
          return;
        }
        reject(err);
      });
    });
  }

  #queryDone(t0: number, text: QueryInput): number {
    const now = performance.now();
    this.lastAnswerAt = now;
    const ms = now - t0;
    this.queryTime.record(ms);
    const slow = this.host.slowQueryMs;
    if (slow > 0 && ms >= slow) {
      this.counters.slowQueries++;
      if (this.host.emitting) {
        const sql = statementText(text);
        this.#emit({ type: 'slow-query', durationMs: ms, text: sql.length > 500 ? `${sql.slice(0, 500)}…` : sql });
      }
    }
    return ms;
  }

  #timeoutError(t0: number, cause: unknown): PoolAcquireTimeoutError {
    this.counters.acquireTimeouts++;
    const timeoutError = new PoolAcquireTimeoutError(this.config.database, this.name, this.#role, Math.round(performance.now() - t0), this.state(), cause);
    if (this.host.emitting) this.#emit({ type: 'error', kind: 'acquire-timeout', message: timeoutError.message });
    return timeoutError;
  }

  #unavailable(): PoolUnavailableError {
    const b = this.#breaker;
    return new PoolUnavailableError(
      this.config.database,
      this.name,
      this.config.address,
      new Date(Math.max(b.retryAt ?? 0, Date.now())),
      `${b.failures} consecutive connection failures (last: ${b.lastFailure})`,
    );
  }

  // Background refill ------------------------------------------------------------------------

  #needsRefill(): boolean {
    return !this.ended && !this.#refillPaused && !this.#warmingUp && this.#bag.total < this.config.min;
  }

  #scheduleRefill(delayMs: number): void {
    if (this.#refillTimer !== undefined || this.#refilling || !this.#needsRefill()) return;
    this.#refillTimer = setTimeout(() => {
      this.#refillTimer = undefined;
      void this.#refill();
    }, delayMs);
    this.#refillTimer.unref();
  }

  /**
   * Opens connections until the pool holds `min` again; a failure retries with exponential
   * backoff and jitter. The breaker rules (README "Circuit breaker"): while it is closed, a round
   * that fails counts as one failure (however many connects it made); while it is open the
   * refill waits for `retryAt` and then is the half-open trial itself (one connect): a success
   * closes it, a failure reopens it for another `resetTimeoutMs`.
   */
  async #refill(): Promise<void> {
    if (!this.#needsRefill()) return;
    const breaker = this.#breaker;
    const trial = breaker.isOpen;
    if (trial && !breaker.admit()) {
      // Not yet time, or a caller holds the trial: look again when it may be over.
      this.#scheduleRefill(Math.max(REFILL_FIRST_DELAY_MS, (breaker.retryAt ?? 0) - Date.now()));
      return;
    }
    this.#refilling = true;
    let failure: Error | undefined;
    let attempted = 0;
    try {
      const missing = trial ? 1 : this.config.min - this.#bag.total;
      const results = await Promise.allSettled(
        Array.from({ length: missing }, () => {
          if (this.ended || this.#bag.total >= this.config.max) return Promise.resolve();
          attempted++;
          return this.#refillOne();
        }),
      );
      for (const r of results) if (r.status === 'rejected') failure ??= r.reason as Error;
    } finally {
      this.#refilling = false;
    }
    if (this.ended) return;
    if (failure === undefined) {
      if (trial && attempted === 0) breaker.trialAbandoned();
      this.#refillDelay = REFILL_FIRST_DELAY_MS;
      this.#scheduleRefill(REFILL_FIRST_DELAY_MS);
      return;
    }
    // Only a failure to reach the server counts (a connection-class error or a connect timeout).
    const counts = countsForBreaker(failure);
    if (counts && (trial || !breaker.isOpen)) breaker.failure(this.host.scrub(errorMessage(failure)));
    else if (trial) breaker.trialAbandoned();
    const delay = this.#refillDelay;
    this.#refillDelay = Math.min(delay * 2, REFILL_MAX_DELAY_MS);
    const retryIn = breaker.isOpen ? Math.max(0, (breaker.retryAt ?? 0) - Date.now()) : Math.max(delay * (0.5 + Math.random() * 0.5), this.#fullUntil - Date.now());
    this.#scheduleRefill(retryIn);
  }

  /** One background connection, opened and pooled (it goes to the first waiter, if any). */
  #refillOne(): Promise<void> {
    const t0 = performance.now();
    this.#refillOpening++;
    return new Promise<void>((resolve, reject) => {
      this.#open(t0, t0 + this.config.connectTimeoutMs, (err, conn) => {
        this.#refillOpening--;
        if (err !== undefined) {
          reject(err);
          return;
        }
        this.counters.refills++;
        this.#breaker.success();
        this.#pool(conn!);
        resolve();
      }, true);
    });
  }

  #emit(partial: Record<string, unknown> & { type: PoolEvent['type'] }): void {
    this.host.emit({ database: this.config.database, node: this.name, role: this.#role, at: Date.now(), ...partial } as PoolEvent);
  }

  #namedStatement(text: QueryConfig): NamedStatementUnsupportedError {
    return new NamedStatementUnsupportedError(this.config.database, String(text.name));
  }
}
