import pg from 'pg';
import type { PoolClient, QueryConfig, QueryResult, QueryResultRow } from 'pg';
import type { ResolvedNode } from '../config/resolve-options.js';
import {
  NamedStatementUnsupportedError,
  PoolAcquireTimeoutError,
  PoolConnectionError,
  PoolUnavailableError,
  type PoolStateSnapshot,
} from '../pool.exceptions.js';
import type { PoolEvent, RemoveReason } from '../pool.events.js';
import type { NodeRole } from '../pool.interfaces.js';
import { isConnectionError, isReadOnlyViolation, isServerRestartError, isSessionTerminated, sqlState as sqlStateOf } from './errors.js';
import { LatencyHistogram, NodeCounters } from './node-stats.js';

const META = Symbol('nestjs-pg-pools.client');
const BORN = Symbol('nestjs-pg-pools.born');
/** The role whose session settings a client was created with. */
const BORN_ROLE = Symbol('nestjs-pg-pools.born-role');
const LIFETIME_JITTER = 0.025;
const ACQUIRE_QUEUE_TIMEOUT = 'timeout exceeded when trying to connect';
/** Upper bound of a validation round trip (HikariCP's validationTimeout); at most half of acquireTimeoutMs. */
const VALIDATION_TIMEOUT_MS = 5000;
/** Background refill: first retry delay, doubling up to the cap, each with jitter (50–100%). */
const REFILL_FIRST_DELAY_MS = 50;
const REFILL_MAX_DELAY_MS = 500;
/**
 * A single statement (or BEGIN) that fails with 57P01 this soon after it was sent is run once more
 * on a new connection: the server terminated the session before running it, or while running it
 * (rolled back, never committed). Longer-running statements are not retried, so a query an
 * operator killed on purpose is not started again.
 */
const STALE_RETRY_WINDOW_MS = 1000;

interface ClientMeta {
  /** Date.now() when the connection opened. */
  connectedAt: number;
  expiresAt: number;
  generation: number;
  lastReleasedAt: number;
  acquiredAt: number;
  ready: boolean;
  broken: boolean;
  /** The error that broke the connection (a server FATAL such as 57P01, or a socket error). */
  brokenBy: unknown;
  leaked: boolean;
  origin: Error | undefined;
  leakTimer: NodeJS.Timeout | undefined;
  lifetimeTimer: NodeJS.Timeout | undefined;
  removeReason: RemoveReason | undefined;
}

type MetaClient = PoolClient & {
  [META]: ClientMeta;
  [BORN]?: number;
  [BORN_ROLE]?: NodeRole;
  getTransactionStatus?: () => string | null;
  _poolUseCount?: number;
  connection?: { stream?: { destroy(): void } };
};

interface PgPoolInternals {
  _idle?: Array<{ client: MetaClient }>;
  _clients?: MetaClient[];
  _pendingQueue?: PendingWaiter[];
  options: { max?: number; connectionTimeoutMillis?: number };
  ending?: boolean;
  _remove?: (client: MetaClient) => void;
  newClient?: (pending: { callback: (err: Error | undefined, client?: MetaClient) => void }) => void;
}

export type QueryInput = string | QueryConfig;

/** What a node pool needs from the database that owns it. */
export interface NodeHost {
  readonly slowQueryMs: number;
  readonly retryAttempts: number;
  readonly retryDelayMs: number;
  readonly breaker: { readonly failureThreshold: number; readonly resetTimeoutMs: number };
  /** True when someone listens to events; events are only built then. */
  readonly emitting: boolean;
  emit(event: PoolEvent): void;
  initClient(client: PoolClient, node: NodePool): Promise<void>;
  warn(message: string): void;
  scrub(message: string): string;
}

export interface NodeStatus extends PoolStateSnapshot {
  min: number;
  breaker: 'closed' | 'open' | 'half-open';
  breakerRetryAt: number | undefined;
}

/** Gives an error the stack of the code awaiting it (call from a promise reaction, like pg does). */
function withCallerStack(err: unknown): never {
  if (err instanceof Error) Error.captureStackTrace(err);
  throw err;
}

/**
 * Rejects a promise (through its `resolve`) with `err`, re-anchoring the stack at the code that
 * awaits it. The chain is linked before `err` is thrown into it, so the stack walk reaches the
 * caller; the success path needs no extra promise.
 */
function rejectAtCaller(resolve: (value: PromiseLike<never>) => void, err: unknown): void {
  let throwIn!: (reason: unknown) => void;
  const failed = new Promise<never>((_, reject) => {
    throwIn = reject;
  });
  resolve(failed.catch(withCallerStack));
  throwIn(err);
}

/** One entry of pg-pool's wait queue (its `PendingItem`). */
interface PendingWaiter {
  callback: (err: Error | undefined, client?: PoolClient, done?: unknown) => void;
  timedOut?: boolean;
}

/** A caller queued for a client, with the moment its acquire timeout expires. */
interface QueuedCaller {
  readonly deadline: number;
  item: PendingWaiter | undefined;
  served: boolean;
}

type ConnectCallback = (err: Error | undefined, client: PoolClient | undefined) => void;

/** How long shutdown waits for one client's socket to close after pg-pool asked it to end. */
const SOCKET_CLOSE_WAIT_MS = 2000;

/** Settles when `client`'s connection has ended (at once if it never connected), or after `ms`. */
function socketClosed(client: PoolClient, ms: number): Promise<void> {
  const state = client as unknown as { _ended?: boolean; connection?: { _connecting?: boolean } };
  if (state._ended === true || state.connection?._connecting !== true) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms).unref();
    client.once('end', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

function statementText(text: QueryInput): string {
  return typeof text === 'string' ? text : text.text;
}

/** One statement (no `;` before the end), so running it again cannot repeat a committed part. */
function isSingleStatement(text: QueryInput): boolean {
  return !statementText(text).trimEnd().replace(/;+$/, '').includes(';');
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * One server's pool: a `pg.Pool` plus what pg-pool leaves out — finite acquire timeout with a
 * useful error, validation on borrow, lifetimes with jitter, release hygiene, leak detection,
 * soft eviction after a server restart, a background refill to `min`, a circuit breaker and
 * PgBouncer transaction-mode rules. Every method is safe to call on a hot path: no per-query
 * allocation beyond the promise chain, counters are plain fields.
 */
export class NodePool {
  readonly pool: pg.Pool;
  readonly counters = new NodeCounters();
  readonly acquireTime = new LatencyHistogram();
  readonly queryTime = new LatencyHistogram();
  readonly connectTime = new LatencyHistogram();
  readonly usageTime = new LatencyHistogram();
  #generation = 0;
  #role: NodeRole;
  #monitor: Promise<pg.Client> | undefined;
  #endPromise: Promise<void> | undefined;
  #failures = 0;
  #openUntil = 0;
  #trialInFlight = false;
  #lastFailure = '';
  #refillTimer: NodeJS.Timeout | undefined;
  #refilling = false;
  #refillDelay = REFILL_FIRST_DELAY_MS;
  readonly #transactionSettings: string;
  /** Callers waiting in pg-pool's queue, oldest first; one timer watches the oldest deadline. */
  readonly #queued: QueuedCaller[] = [];
  #queueTimer: NodeJS.Timeout | undefined;
  #idleSweep: NodeJS.Timeout | undefined;

  constructor(
    readonly config: ResolvedNode,
    private readonly host: NodeHost,
  ) {
    this.#role = config.role;
    const poolConfig = config.poolConfig;
    const Base = (poolConfig.Client as typeof pg.Client | undefined) ?? pg.Client;
    const timezone = config.pgbouncer ? config.timezone : undefined;
    const sessionConfig = (args: ConstructorParameters<typeof pg.Client>) => this.#sessionConfig(args);
    const bornRole = () => this.#role;
    const BornClient = class extends Base {
      constructor(...args: ConstructorParameters<typeof pg.Client>) {
        super(...sessionConfig(args));
        (this as unknown as MetaClient)[BORN] = performance.now();
        (this as unknown as MetaClient)[BORN_ROLE] = bornRole();
      }

      getStartupConf(): Record<string, string> {
        const conf = (Base.prototype as unknown as { getStartupConf(this: unknown): Record<string, string> }).getStartupConf.call(this);
        if (timezone !== undefined) conf.TimeZone = timezone;
        return conf;
      }
    };
    this.#transactionSettings =
      config.pgbouncer && config.statementTimeoutMs > 0 ? `; SET LOCAL statement_timeout = ${config.statementTimeoutMs}` : '';
    // pg-pool arms an idle timer on every release and clears it on the next checkout; a busy pool
    // pays that on every query. Idle connections above min are closed by one sweep instead.
    this.pool = new pg.Pool({ ...poolConfig, idleTimeoutMillis: 0, Client: BornClient });
    const idleTimeoutMs = config.idleTimeoutMs;
    if (idleTimeoutMs > 0) {
      this.#idleSweep = setInterval(() => this.#closeIdle(idleTimeoutMs), Math.min(Math.max(Math.ceil(idleTimeoutMs / 4), 100), 5000));
      this.#idleSweep.unref();
    }
    this.pool.on('connect', (client) => this.#onConnect(client as MetaClient));
    this.pool.on('error', (err, client) => this.#onIdleError(err, client as MetaClient));
    this.pool.on('remove', (client) => this.#onRemove(client as MetaClient));
  }

  get name(): string {
    return this.config.name;
  }

  get role(): NodeRole {
    return this.#role;
  }

  /**
   * Changes the node's role (a failover promoted or demoted it): new connections get that role's
   * session settings (replicas: `default_transaction_read_only`), existing sessions are retired.
   */
  setRole(role: 'primary' | 'replica'): void {
    if (role === this.#role) return;
    this.#role = role;
    this.evictAll();
  }

  /**
   * A monitoring statement with a deadline, on a connection of its own (application_name
   * "<applicationName> monitor", outside the pool: an exhausted pool must not look like a dead
   * server). A connection that does not answer within `timeoutMs` is dropped and the promise rejects.
   */
  systemQuery(text: string, values?: unknown[], timeoutMs = 5000): Promise<QueryResult> {
    if (this.ended) return Promise.reject(new Error(`The pool "${this.config.database}/${this.name}" is closed.`));
    let timer: NodeJS.Timeout | undefined;
    const monitor = (this.#monitor ??= this.#openMonitor(timeoutMs));
    const run = monitor.then((client) => client.query(text, values));
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        void this.#dropMonitor(monitor);
        reject(new Error(`"${this.config.database}/${this.name}" (${this.config.address}) did not answer within ${timeoutMs}ms`));
      }, timeoutMs);
      timer.unref();
    });
    return Promise.race([run, timeout]).then(
      (res) => {
        clearTimeout(timer);
        return res;
      },
      (err: unknown) => {
        clearTimeout(timer);
        if (isConnectionError(err) || sqlStateOf(err) === undefined) void this.#dropMonitor(monitor);
        throw err;
      },
    );
  }

  #openMonitor(timeoutMs: number): Promise<pg.Client> {
    const poolConfig = this.config.poolConfig;
    const Base = (poolConfig.Client as typeof pg.Client | undefined) ?? pg.Client;
    const name = `${String(poolConfig.application_name ?? '').slice(0, 54)} monitor`.trim();
    const client = new Base({ ...poolConfig, application_name: name, connectionTimeoutMillis: timeoutMs, keepAlive: true } as pg.ClientConfig);
    // An idle monitor connection that breaks is dropped; the next check opens a new one.
    const opened: Promise<pg.Client> = client.connect().then(
      () => {
        // A background monitor never keeps the process alive (its queries are bounded by timers).
        (client as unknown as { unref(): void }).unref();
        return client;
      },
      (err: unknown) => {
        if (this.#monitor === opened) this.#monitor = undefined;
        client.end().catch(() => undefined);
        throw err;
      },
    );
    client.on('error', () => void this.#dropMonitor(opened));
    return opened;
  }

  #dropMonitor(monitor: Promise<pg.Client> | undefined = this.#monitor): Promise<void> {
    if (monitor === undefined) return Promise.resolve();
    if (this.#monitor === monitor) this.#monitor = undefined;
    return monitor.then(
      (client) => client.end().catch(() => undefined),
      () => undefined,
    );
  }

  /** The client config for the node's current role (its startup `options`). */
  #sessionConfig(args: ConstructorParameters<typeof pg.Client>): ConstructorParameters<typeof pg.Client> {
    const byRole = this.config.roleOptions;
    const given = args[0];
    if (byRole === undefined || given === null || typeof given !== 'object' || this.#role === this.config.role) return args;
    const options = byRole[this.#role];
    const next: pg.ClientConfig = { ...given };
    // pg-pool keeps the password as a non-enumerable property of its options.
    if ('password' in given) Object.defineProperty(next, 'password', { value: given.password, enumerable: false, writable: true, configurable: true });
    if (options === undefined) delete next.options;
    else next.options = options;
    return [next];
  }

  get inUse(): number {
    return this.pool.totalCount - this.pool.idleCount;
  }

  get waiting(): number {
    return this.pool.waitingCount;
  }

  get ended(): boolean {
    return this.#endPromise !== undefined;
  }

  state(): PoolStateSnapshot {
    const total = this.pool.totalCount;
    const idle = this.pool.idleCount;
    return { total, idle, inUse: total - idle, waiting: this.pool.waitingCount, max: this.config.max };
  }

  status(): NodeStatus {
    return {
      ...this.state(),
      min: this.config.min,
      breaker: this.#openUntil === 0 ? 'closed' : Date.now() >= this.#openUntil ? 'half-open' : 'open',
      breakerRetryAt: this.#openUntil === 0 ? undefined : this.#openUntil,
    };
  }

  /** Breaker closed, or open long enough for a trial. Cheap; used by routing. */
  get available(): boolean {
    return this.#openUntil === 0 || (Date.now() >= this.#openUntil && !this.#trialInFlight);
  }

  /**
   * Takes a client and opens a transaction on it with `begin` (plus, behind PgBouncer, a
   * `SET LOCAL statement_timeout`: session settings do not survive transaction pooling). When the
   * server had terminated the pooled session, it starts over once on a new connection.
   */
  begin(begin: string): Promise<PoolClient> {
    const sql = begin + this.#transactionSettings;
    return this.acquire().then((client) => this.#begin(client as MetaClient, sql, true));
  }

  acquire(): Promise<PoolClient> {
    const t0 = performance.now();
    let acquired: Promise<PoolClient>;
    if (this.#openUntil !== 0) {
      const refused = this.#breakerGate();
      if (refused) return Promise.reject(refused);
      acquired = this.#connect(t0).catch((err: unknown) => {
        this.#trialInFlight = false;
        throw err;
      });
    } else {
      acquired = this.#connect(t0);
    }
    if (this.config.leakDetectionThresholdMs === 0) return acquired;
    // Taken here, while the caller's frames are still on the stack; formatted only if it leaks.
    const origin = new Error('Client acquired here');
    return acquired.then((client) => {
      this.#armLeak((client as MetaClient)[META], origin);
      return client;
    });
  }

  /**
   * Runs one statement on a client of this pool and always gives the client back. When the server
   * had terminated the pooled session (57P01) just before, the statement runs once more on a new one.
   */
  query<R extends QueryResultRow = any>(text: QueryInput, values?: unknown[]): Promise<QueryResult<R>> {
    if (typeof text === 'string' && this.#openUntil === 0) return this.#queryText<R>(text, values);
    if (this.config.pgbouncer && typeof text === 'object' && text.name) return Promise.reject(this.#namedStatement(text));
    return this.acquire().then((client) => this.#execute<R>(client as MetaClient, text, values, true, true));
  }

  /**
   * `query` of a SQL string with the breaker closed: the steps of `acquire` + `#execute` on pg's
   * callbacks under one promise instead of a chain of seven (the hot path). A checkout that needs
   * I/O first (first use, validation, a replaced connection) continues on the promise path.
   * Errors are re-anchored at the awaiting caller, as pg's own promises do.
   */
  #queryText<R extends QueryResultRow>(text: string, values: unknown[] | undefined): Promise<QueryResult<R>> {
    const t0 = performance.now();
    // As in acquire(): taken while the caller's frames are on the stack; formatted only if it leaks.
    const origin = this.config.leakDetectionThresholdMs === 0 ? undefined : new Error('Client acquired here');
    return new Promise<QueryResult<R>>((resolve) => {
      this.#poolConnect((connectError, pooled) => {
        const client = pooled as MetaClient;
        let checked: PoolClient | Promise<PoolClient>;
        try {
          checked = connectError ? this.#acquireFailed(connectError, t0) : this.#checkout(client, t0, 0);
        } catch (failure) {
          rejectAtCaller(resolve, failure);
          return;
        }
        if (checked !== client) {
          (checked as Promise<PoolClient>)
            .then((c) => {
              if (origin !== undefined) this.#armLeak((c as MetaClient)[META], origin);
              return this.#execute<R>(c as MetaClient, text, values, true, true);
            })
            .then(resolve, (err: unknown) => rejectAtCaller(resolve, err));
          return;
        }
        try {
          if (origin !== undefined) this.#armLeak(client[META], origin);
          const started = performance.now();
          this.counters.queries++;
          client.query<R>(text, values as any[], (queryError: Error | undefined, res: QueryResult<R>) => {
            try {
              const ms = this.#queryDone(started, text);
              if (!queryError) {
                this.release(client);
                resolve(res);
                return;
              }
              this.counters.queryErrors++;
              this.release(client, queryError);
              // The stale-session rule of #execute.
              if (ms < STALE_RETRY_WINDOW_MS && isSessionTerminated(queryError) && isSingleStatement(text)) {
                this.counters.staleRetries++;
                this.acquire()
                  .then((fresh) => this.#execute<R>(fresh as MetaClient, text, values, true, false))
                  .then(resolve, (err: unknown) => rejectAtCaller(resolve, err));
                return;
              }
              rejectAtCaller(resolve, queryError);
            } catch (failure) {
              rejectAtCaller(resolve, failure);
            }
          });
        } catch (failure) {
          rejectAtCaller(resolve, failure);
        }
      });
    });
  }

  /** Runs a statement on a client already taken from this pool; releases it when `release` is set. */
  run<R extends QueryResultRow = any>(client: PoolClient, text: QueryInput, values: unknown[] | undefined, release: boolean): Promise<QueryResult<R>> {
    if (this.config.pgbouncer && typeof text === 'object' && text.name) {
      const err = this.#namedStatement(text);
      if (release) this.release(client);
      return Promise.reject(err);
    }
    return this.#execute<R>(client as MetaClient, text, values, release, false);
  }

  /**
   * Gives a client back. A connection-class error destroys it (and, for a server shutdown,
   * soft-evicts the rest of the pool); 25006 on the primary checks for a demoted server; an open
   * or aborted transaction is rolled back first; a retired or broken client is closed instead of pooled.
   */
  release(client: PoolClient, err?: unknown): void {
    const c = client as MetaClient;
    const meta = c[META];
    this.counters.released++;
    const now = Date.now();
    if (meta.acquiredAt !== 0) {
      this.usageTime.record(now - meta.acquiredAt);
      if (this.host.emitting) this.#emit({ type: 'release', heldMs: now - meta.acquiredAt });
    }
    if (meta.leakTimer !== undefined) this.#clearLeak(meta, now);
    meta.acquiredAt = 0;
    if (err !== undefined && isConnectionError(err)) {
      this.counters.connectionErrors++;
      meta.removeReason = 'error';
      c.release(err as Error);
      if (isServerRestartError(err)) this.evictAll();
      return;
    }
    if (meta.broken) {
      meta.removeReason = 'error';
      c.release(true);
      return;
    }
    if (err !== undefined && this.role === 'primary' && isReadOnlyViolation(err)) {
      this.#checkDemoted(c, meta);
      return;
    }
    const tx = c.getTransactionStatus ? c.getTransactionStatus() : null;
    if (tx === 'T' || tx === 'E') {
      this.#rollbackAndRelease(c, meta);
      return;
    }
    this.#giveBack(c, meta, now);
  }

  /**
   * Marks every current connection stale: idle ones are closed now, checked-out ones when they
   * come back; the pool then refills to `min` in the background. Used after a server restart or a failover.
   */
  evictAll(): void {
    this.#generation++;
    const internal = this.pool as unknown as PgPoolInternals;
    if (Array.isArray(internal._idle) && typeof internal._remove === 'function') {
      for (const item of internal._idle.slice()) {
        item.client[META].removeReason = 'evicted';
        this.counters.evictions++;
        internal._remove.call(this.pool, item.client);
      }
    }
    this.#scheduleRefill(REFILL_FIRST_DELAY_MS);
  }

  /** Opens the first connection (with backoff + jitter), then up to `min`. Throws `PoolConnectionError`. */
  async warmUp(): Promise<void> {
    const attempts = this.host.retryAttempts;
    let delay = this.host.retryDelayMs;
    let lastError = '';
    for (let attempt = 1; attempt <= attempts; attempt++) {
      try {
        // #checkout releases a client it rejects, and may hand out another one.
        const client = await this.pool.connect();
        this.release(await this.#checkout(client as MetaClient, performance.now(), 0));
        lastError = '';
        break;
      } catch (err) {
        lastError = this.host.scrub(errorMessage(err)).replace(/\.$/, '');
        if (attempt < attempts) {
          this.host.warn(
            `Connecting to "${this.config.database}/${this.name}" at ${this.config.address} failed (attempt ${attempt}/${attempts}): ${lastError}. Retrying in ${delay}ms.`,
          );
          await sleep(delay * (0.8 + Math.random() * 0.4));
          delay = Math.min(delay * 2, 30_000);
        }
      }
    }
    if (lastError) {
      this.#scheduleRefill(REFILL_MAX_DELAY_MS);
      throw new PoolConnectionError(this.config.database, this.name, this.config.address, attempts, lastError);
    }
    // Holding `min` clients at once opens `min` connections: an idle one is reused by the first acquire.
    if (this.config.min > this.pool.totalCount) {
      const clients = await Promise.allSettled(Array.from({ length: this.config.min }, () => this.acquire()));
      for (const r of clients) if (r.status === 'fulfilled') this.release(r.value);
    }
  }

  /** Waits until no client is checked out, up to `timeoutMs`. Returns how many were still out. */
  async drain(timeoutMs: number): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    while (this.inUse > 0 && Date.now() < deadline) await sleep(25);
    return this.inUse;
  }

  /** Ends the pool; later calls return the same promise. */
  end(): Promise<void> {
    if (!this.#endPromise) {
      clearTimeout(this.#refillTimer);
      this.#refillTimer = undefined;
      clearInterval(this.#idleSweep);
      // Every client, idle ones included: pg-pool's end() drops the idle ones from its list at once.
      const every = (this.pool as unknown as PgPoolInternals)._clients?.slice() ?? [];
      const ended = this.pool.end().catch((err: unknown) => {
        this.host.warn(`Ending pool "${this.config.database}/${this.name}" failed: ${this.host.scrub(String(err))}`);
      });
      // pg-pool's end() waits for every checked-out client; one that is never released would
      // hang shutdown, so whatever is still out (after drain) is disconnected now.
      const held = (this.pool as unknown as PgPoolInternals)._clients?.slice() ?? [];
      const stopped =
        held.length === 0 ? ended : Promise.race([ended, Promise.allSettled(held.map((c) => this.#disconnect(c))).then(() => undefined)]);
      // pg-pool settles end() once it has asked every client to close, not once they have: wait
      // (bounded) for the sockets, so that after shutdown no session is left on the server.
      const monitorClosed = this.#dropMonitor();
      this.#endPromise = stopped
        .then(() => Promise.all([monitorClosed, ...every.map((c) => socketClosed(c, SOCKET_CLOSE_WAIT_MS))]))
        .then(() => undefined);
    }
    return this.#endPromise;
  }

  #disconnect(client: MetaClient): Promise<void> {
    const meta = client[META] as ClientMeta | undefined;
    if (meta !== undefined) {
      meta.broken = true;
      meta.removeReason = 'shutdown';
    }
    return client.end();
  }

  #emit(partial: Record<string, unknown> & { type: PoolEvent['type'] }): void {
    this.host.emit({
      database: this.config.database,
      node: this.name,
      role: this.role,
      at: Date.now(),
      ...partial,
    } as PoolEvent);
  }

  #namedStatement(text: QueryConfig): NamedStatementUnsupportedError {
    return new NamedStatementUnsupportedError(this.config.database, String(text.name));
  }

  /** pg-pool's callback under one promise (its promise form adds two more per checkout). */
  /**
   * pg-pool's `connect(cb)`, except that a caller who has to queue gets no timer of its own: pg-pool
   * arms and clears one per waiter, which a busy pool pays on every query. The acquire timeout of
   * queued callers is kept here instead, with one timer for the oldest (all share the same timeout,
   * so deadlines come in queue order), and expiring ones leave pg-pool's queue as its own timer
   * would make them. New connections keep pg-pool's connect timeout.
   */
  #poolConnect(cb: ConnectCallback): void {
    const pool = this.pool as unknown as PgPoolInternals;
    const queue = pool._pendingQueue;
    const options = pool.options;
    if (queue === undefined || pool.ending === true || (pool._idle?.length ?? 0) !== 0 || this.pool.totalCount < (options.max ?? 10)) {
      this.pool.connect(cb as Parameters<pg.Pool['connect']>[0]);
      return;
    }
    const caller: QueuedCaller = { deadline: performance.now() + this.config.acquireTimeoutMs, item: undefined, served: false };
    const timeout = options.connectionTimeoutMillis;
    options.connectionTimeoutMillis = 0;
    try {
      this.pool.connect(((err: Error | undefined, client: PoolClient | undefined) => {
        caller.served = true;
        this.#dropServed();
        cb(err, client);
      }) as Parameters<pg.Pool['connect']>[0]);
    } finally {
      options.connectionTimeoutMillis = timeout;
    }
    caller.item = queue[queue.length - 1];
    this.#queued.push(caller);
    if (this.#queueTimer === undefined) this.#armQueueTimer(caller.deadline);
  }

  #dropServed(): void {
    const queued = this.#queued;
    while (queued.length !== 0 && queued[0]!.served) queued.shift();
  }

  #armQueueTimer(deadline: number): void {
    this.#queueTimer = setTimeout(() => this.#expireQueued(), Math.max(0, Math.ceil(deadline - performance.now())));
    this.#queueTimer.unref();
  }

  /** Fails every queued caller whose acquire timeout has passed, as pg-pool's per-waiter timer would. */
  #expireQueued(): void {
    this.#queueTimer = undefined;
    const now = performance.now();
    const queued = this.#queued;
    const pending = (this.pool as unknown as PgPoolInternals)._pendingQueue ?? [];
    while (queued.length !== 0) {
      const caller = queued[0]!;
      if (!caller.served && caller.deadline > now) break;
      queued.shift();
      if (caller.served || caller.item === undefined) continue;
      const at = pending.indexOf(caller.item);
      if (at !== -1) pending.splice(at, 1);
      caller.served = true;
      caller.item.timedOut = true;
      caller.item.callback(new Error(ACQUIRE_QUEUE_TIMEOUT));
    }
    // A callback above may have queued a new caller, and armed the timer for it.
    if (queued.length !== 0 && this.#queueTimer === undefined) this.#armQueueTimer(queued[0]!.deadline);
  }

  #connect(t0: number): Promise<PoolClient> {
    return new Promise<PoolClient>((resolve) => {
      this.#poolConnect((err, client) => {
        try {
          resolve(err ? this.#acquireFailed(err, t0) : this.#checkout(client as MetaClient, t0, 0));
        } catch (failure) {
          rejectAtCaller(resolve, failure);
        }
      });
    });
  }

  #execute<R extends QueryResultRow>(client: MetaClient, text: QueryInput, values: unknown[] | undefined, release: boolean, retry: boolean): Promise<QueryResult<R>> {
    const t0 = performance.now();
    const meta = client[META];
    this.counters.queries++;
    if (!release && meta.broken && meta.brokenBy !== undefined) {
      // The server ended this connection between two statements of a transaction: report why
      // (e.g. 57P01) rather than the driver's "not queryable".
      this.counters.queryErrors++;
      return Promise.reject(meta.brokenBy);
    }
    return client.query<R>(text as string, values).then(
      (res) => {
        this.#queryDone(t0, text);
        if (release) this.release(client);
        return res;
      },
      (err: unknown) => {
        const ms = this.#queryDone(t0, text);
        this.counters.queryErrors++;
        if (release) this.release(client, err);
        else if (isConnectionError(err)) client[META].broken = true;
        if (retry && ms < STALE_RETRY_WINDOW_MS && isSessionTerminated(err) && isSingleStatement(text)) {
          this.counters.staleRetries++;
          return this.acquire().then((fresh) => this.#execute<R>(fresh as MetaClient, text, values, true, false));
        }
        throw err;
      },
    );
  }

  #begin(client: MetaClient, sql: string, retry: boolean): Promise<PoolClient> {
    const t0 = performance.now();
    this.counters.queries++;
    return client.query(sql).then(
      () => {
        this.#queryDone(t0, sql);
        return client;
      },
      (err: unknown) => {
        const ms = this.#queryDone(t0, sql);
        this.counters.queryErrors++;
        this.release(client, err);
        if (retry && ms < STALE_RETRY_WINDOW_MS && isSessionTerminated(err)) {
          this.counters.staleRetries++;
          return this.acquire().then((fresh) => this.#begin(fresh as MetaClient, sql, false));
        }
        throw err;
      },
    );
  }

  #onConnect(client: MetaClient): void {
    const now = Date.now();
    const lifetime = this.config.maxLifetimeMs;
    const lifetimeMs = lifetime > 0 ? lifetime * (1 - LIFETIME_JITTER + Math.random() * 2 * LIFETIME_JITTER) : 0;
    const meta: ClientMeta = {
      connectedAt: now,
      expiresAt: lifetimeMs > 0 ? now + lifetimeMs : 0,
      // A connection opened for the other role (a failover changed it while it was connecting) is stale at once.
      generation: client[BORN_ROLE] === undefined || client[BORN_ROLE] === this.#role ? this.#generation : -1,
      lastReleasedAt: 0,
      acquiredAt: 0,
      ready: false,
      broken: false,
      brokenBy: undefined,
      leaked: false,
      origin: undefined,
      leakTimer: undefined,
      lifetimeTimer: undefined,
      removeReason: undefined,
    };
    client[META] = meta;
    if (lifetimeMs > 0) {
      meta.lifetimeTimer = setTimeout(() => this.#retireIfIdle(client, 'lifetime'), lifetimeMs);
      meta.lifetimeTimer.unref();
    }
    client.on('error', (err: unknown) => {
      meta.broken = true;
      meta.brokenBy ??= err;
    });
    this.counters.created++;
    const born = client[BORN];
    if (born !== undefined) {
      const ms = performance.now() - born;
      this.connectTime.record(ms);
      if (this.host.emitting) this.#emit({ type: 'connect', durationMs: ms });
    }
  }

  #onIdleError(err: Error, client: MetaClient): void {
    this.counters.idleErrors++;
    if (client[META]) client[META].removeReason = 'error';
    if (this.host.emitting) this.#emit({ type: 'error', kind: 'idle-client', message: this.host.scrub(err.message) });
    if (isServerRestartError(err)) this.evictAll();
  }

  #onRemove(client: MetaClient): void {
    this.counters.removed++;
    const meta = client[META] as ClientMeta | undefined;
    if (meta !== undefined) {
      clearTimeout(meta.lifetimeTimer);
      if (meta.leakTimer !== undefined) clearTimeout(meta.leakTimer);
    }
    if (this.host.emitting) {
      const reason = meta?.removeReason ?? (meta?.broken ? 'error' : this.ended ? 'shutdown' : 'idle');
      this.#emit({ type: 'remove', reason });
    }
    if (!this.ended && this.pool.totalCount < this.config.min) this.#scheduleRefill(0);
  }

  /** Closes a pooled client that reached its lifetime while idle (checked-out ones retire on release). */
  /** Closes connections idle for `idleTimeoutMs` or longer, oldest first, while the pool is above min. */
  #closeIdle(idleTimeoutMs: number): void {
    const internal = this.pool as unknown as PgPoolInternals;
    const idle = internal._idle;
    if (this.ended || idle === undefined || idle.length === 0 || typeof internal._remove !== 'function') return;
    const now = Date.now();
    let total = this.pool.totalCount;
    // pg-pool hands out the most recently released client first, so the front has idled longest.
    for (const { client } of idle.slice()) {
      if (total <= this.config.min) break;
      const meta = client[META] as ClientMeta | undefined;
      if (meta === undefined || now - (meta.lastReleasedAt || meta.connectedAt) < idleTimeoutMs) continue;
      meta.removeReason = 'idle';
      internal._remove.call(this.pool, client);
      total--;
    }
  }

  #retireIfIdle(client: MetaClient, reason: RemoveReason): void {
    const internal = this.pool as unknown as PgPoolInternals;
    if (this.ended || !internal._idle?.some((item) => item.client === client) || typeof internal._remove !== 'function') return;
    client[META].removeReason = reason;
    this.counters.evictions++;
    internal._remove.call(this.pool, client);
  }

  #checkout(client: MetaClient, t0: number, attempt: number): PoolClient | Promise<PoolClient> {
    const meta = client[META];
    const now = Date.now();
    if (meta.broken || meta.generation !== this.#generation || (meta.expiresAt !== 0 && now >= meta.expiresAt)) {
      meta.removeReason = meta.broken ? 'error' : meta.generation !== this.#generation ? 'evicted' : 'lifetime';
      if (!meta.broken) this.counters.evictions++;
      client.release(true);
      return this.#retryCheckout(t0, attempt);
    }
    if (!meta.ready) {
      return this.host.initClient(client, this).then(
        () => {
          meta.ready = true;
          return this.#handOut(client, meta, t0, now);
        },
        (err: unknown) => {
          meta.removeReason = 'error';
          client.release(true);
          throw err;
        },
      );
    }
    const validateAfter = this.config.validateIdleAfterMs;
    if (meta.lastReleasedAt !== 0 && (validateAfter === 0 || now - meta.lastReleasedAt > validateAfter)) {
      return this.#validate(client, meta).then(
        () => this.#handOut(client, meta, t0, now),
        (err: unknown) => {
          this.counters.validationFailures++;
          meta.removeReason = 'validation';
          if (this.host.emitting) this.#emit({ type: 'error', kind: 'validation', message: this.host.scrub(errorMessage(err)) });
          client.release(true);
          return this.#retryCheckout(t0, attempt);
        },
      );
    }
    return this.#handOut(client, meta, t0, now);
  }

  /** An empty query, bounded so a replacement still fits in acquireTimeoutMs: a connection that does not answer is destroyed. */
  #validate(client: MetaClient, meta: ClientMeta): Promise<unknown> {
    const timer = setTimeout(() => {
      meta.broken = true;
      client.connection?.stream?.destroy();
    }, Math.min(VALIDATION_TIMEOUT_MS, Math.ceil(this.config.acquireTimeoutMs / 2)));
    timer.unref();
    return client.query('').finally(() => clearTimeout(timer));
  }

  #retryCheckout(t0: number, attempt: number): Promise<PoolClient> {
    if (attempt >= this.config.max + 1) {
      return Promise.reject(new PoolConnectionError(this.config.database, this.name, this.config.address, attempt, 'every pooled connection was stale'));
    }
    if (performance.now() - t0 >= this.config.acquireTimeoutMs) {
      return Promise.reject(this.#timeoutError(t0, undefined));
    }
    return this.pool.connect().then(
      (client) => this.#checkout(client as MetaClient, t0, attempt + 1),
      (err: unknown) => this.#acquireFailed(err, t0),
    );
  }

  #handOut(client: MetaClient, meta: ClientMeta, t0: number, now: number): PoolClient {
    meta.acquiredAt = now;
    this.counters.acquired++;
    const waited = performance.now() - t0;
    this.acquireTime.record(waited);
    if (this.#openUntil !== 0 || this.#failures !== 0) this.#breakerSuccess();
    if (this.host.emitting) this.#emit({ type: 'acquire', waitMs: waited });
    return client;
  }

  #timeoutError(t0: number, cause: unknown): PoolAcquireTimeoutError {
    this.counters.acquireTimeouts++;
    const timeoutError = new PoolAcquireTimeoutError(
      this.config.database,
      this.name,
      this.role,
      Math.round(performance.now() - t0),
      this.state(),
      cause,
    );
    if (this.host.emitting) this.#emit({ type: 'error', kind: 'acquire-timeout', message: timeoutError.message });
    return timeoutError;
  }

  #acquireFailed(err: unknown, t0: number): never {
    const message = (err as Error)?.message ?? '';
    if (message === ACQUIRE_QUEUE_TIMEOUT || message.includes('connection timeout')) {
      const timeoutError = this.#timeoutError(t0, err);
      if (message !== ACQUIRE_QUEUE_TIMEOUT) {
        (timeoutError as { connectionError?: boolean }).connectionError = true;
        this.#breakerFailure(this.host.scrub(message));
      }
      throw timeoutError;
    }
    if (isConnectionError(err)) {
      this.counters.connectionErrors++;
      this.#breakerFailure(this.host.scrub(message));
      if (this.host.emitting) this.#emit({ type: 'error', kind: 'connection', message: this.host.scrub(message) });
      this.#scheduleRefill(REFILL_FIRST_DELAY_MS);
    }
    if (err instanceof Error) err.message = this.host.scrub(err.message);
    throw err;
  }

  #queryDone(t0: number, text: QueryInput): number {
    const ms = performance.now() - t0;
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

  /** Pools the client again unless it is stale (evicted generation), past its lifetime or at `maxUses`. */
  #giveBack(c: MetaClient, meta: ClientMeta, now: number): void {
    if (meta.generation !== this.#generation || (meta.expiresAt !== 0 && now >= meta.expiresAt)) {
      this.counters.evictions++;
      meta.removeReason = meta.generation !== this.#generation ? 'evicted' : 'lifetime';
      c.release(true);
      return;
    }
    if ((c._poolUseCount ?? 0) + 1 >= this.config.maxUses) {
      this.counters.evictions++;
      meta.removeReason = 'max-uses';
    }
    meta.lastReleasedAt = now;
    c.release();
  }

  #rollbackAndRelease(client: MetaClient, meta: ClientMeta): void {
    this.counters.rollbacksOnRelease++;
    client.query('ROLLBACK').then(
      () => this.#giveBack(client, meta, Date.now()),
      () => {
        meta.removeReason = 'rollback-failed';
        this.counters.evictions++;
        client.release(true);
      },
    );
  }

  /**
   * 25006 from the primary: a read-only transaction the caller asked for, or a demoted server.
   * Asks the server on the same connection; if it is in recovery, every connection is evicted so
   * new ones (re-resolving the host) reach the current primary.
   */
  #checkDemoted(client: MetaClient, meta: ClientMeta): void {
    const tx = client.getTransactionStatus ? client.getTransactionStatus() : null;
    const rollback = tx === 'T' || tx === 'E' ? client.query('ROLLBACK') : Promise.resolve();
    rollback
      .then(() => client.query<{ recovering: boolean }>('SELECT pg_is_in_recovery() AS recovering'))
      .then(
        (res) => {
          if (res.rows[0]?.recovering !== true) {
            this.#giveBack(client, meta, Date.now());
            return;
          }
          this.counters.demotions++;
          this.counters.evictions++;
          meta.removeReason = 'evicted';
          client.release(true);
          const message =
            `The primary "${this.config.database}/${this.name}" (${this.config.address}) is in recovery (read-only): it was demoted. ` +
            'Every connection of its pool is closed so new ones reach the current primary.';
          this.host.warn(message);
          if (this.host.emitting) this.#emit({ type: 'error', kind: 'read-only', message });
          this.evictAll();
        },
        () => {
          meta.removeReason = 'error';
          client.release(true);
        },
      );
  }

  #armLeak(meta: ClientMeta, origin: Error): void {
    meta.origin = origin;
    meta.leaked = false;
    const threshold = this.config.leakDetectionThresholdMs;
    meta.leakTimer = setTimeout(() => {
      meta.leaked = true;
      this.counters.leaks++;
      const stack = meta.origin?.stack ?? '';
      this.host.warn(
        `Possible connection leak on "${this.config.database}/${this.name}": a client has been held for more than ${threshold}ms. Acquired at:\n${stack}`,
      );
      if (this.host.emitting) this.#emit({ type: 'leak', heldMs: threshold, stack });
    }, threshold);
    meta.leakTimer.unref();
  }

  #clearLeak(meta: ClientMeta, now: number): void {
    clearTimeout(meta.leakTimer);
    meta.leakTimer = undefined;
    if (meta.leaked) {
      meta.leaked = false;
      this.host.warn(`Previously reported leaked client of "${this.config.database}/${this.name}" was returned after ${now - meta.acquiredAt}ms.`);
    }
    meta.origin = undefined;
  }

  // Background refill ------------------------------------------------------------------------

  #needsRefill(): boolean {
    return !this.ended && (this.pool.totalCount < this.config.min || this.#openUntil !== 0);
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
   * Opens connections until the pool holds `min` again (one when only probing an open breaker).
   * A success closes the breaker; a failure retries with exponential backoff and jitter.
   */
  async #refill(): Promise<void> {
    if (!this.#needsRefill()) return;
    this.#refilling = true;
    let failed = false;
    try {
      const missing = Math.max(1, this.config.min - this.pool.totalCount);
      const results = await Promise.allSettled(Array.from({ length: missing }, () => this.#refillOne()));
      failed = results.some((r) => r.status === 'rejected');
    } finally {
      this.#refilling = false;
    }
    if (failed) {
      const delay = this.#refillDelay;
      this.#refillDelay = Math.min(delay * 2, REFILL_MAX_DELAY_MS);
      this.#scheduleRefill(delay * (0.5 + Math.random() * 0.5));
    } else {
      this.#refillDelay = REFILL_FIRST_DELAY_MS;
      this.#scheduleRefill(REFILL_FIRST_DELAY_MS);
    }
  }

  /** A new physical connection, even while idle ones are pooled (pg-pool's `connect()` would hand those out). */
  #openNew(): Promise<MetaClient> {
    const internal = this.pool as unknown as PgPoolInternals;
    if (typeof internal.newClient !== 'function' || this.pool.totalCount >= this.config.max) {
      return this.pool.connect() as Promise<MetaClient>;
    }
    return new Promise((resolve, reject) => {
      internal.newClient!.call(this.pool, { callback: (err, client) => (err ? reject(err) : resolve(client!)) });
    });
  }

  /** One background connection: opened (or, when the pool is full, a pooled one validated) and given straight back. */
  async #refillOne(): Promise<void> {
    if (this.ended) return;
    const client = await this.#openNew();
    const meta = client[META];
    try {
      if (!meta.ready) {
        await this.host.initClient(client, this);
        meta.ready = true;
        this.counters.refills++;
      } else {
        await this.#validate(client, meta);
      }
    } catch (err) {
      meta.removeReason = 'error';
      client.release(true);
      throw err;
    }
    if (this.#openUntil !== 0 || this.#failures !== 0) this.#breakerSuccess();
    this.#giveBack(client, meta, Date.now());
  }

  // Circuit breaker ---------------------------------------------------------------------------

  #breakerGate(): PoolUnavailableError | undefined {
    const now = Date.now();
    if (now < this.#openUntil || this.#trialInFlight) {
      return new PoolUnavailableError(
        this.config.database,
        this.name,
        this.config.address,
        new Date(Math.max(this.#openUntil, now)),
        `${this.#failures} consecutive connection failures (last: ${this.#lastFailure})`,
      );
    }
    this.#trialInFlight = true;
    return undefined;
  }

  #breakerSuccess(): void {
    const wasOpen = this.#openUntil !== 0;
    this.#failures = 0;
    this.#openUntil = 0;
    this.#trialInFlight = false;
    if (wasOpen && this.host.emitting) this.#emit({ type: 'breaker-closed' });
  }

  #breakerFailure(message: string): void {
    this.#failures++;
    this.#lastFailure = message;
    const { failureThreshold, resetTimeoutMs } = this.host.breaker;
    if (this.#trialInFlight || this.#failures >= failureThreshold) {
      const reopened = this.#openUntil !== 0;
      this.#trialInFlight = false;
      this.#openUntil = Date.now() + resetTimeoutMs;
      if (!reopened) {
        this.counters.breakerOpens++;
        this.host.warn(
          `Circuit breaker of "${this.config.database}/${this.name}" (${this.config.address}) opened after ${this.#failures} consecutive connection failures ` +
            `(last: ${message}). Calls fail fast with PoolUnavailableError until ${new Date(this.#openUntil).toISOString()} or until a background reconnect succeeds.`,
        );
      }
      if (this.host.emitting) this.#emit({ type: 'breaker-open', retryAt: this.#openUntil, failures: this.#failures });
      this.#scheduleRefill(REFILL_FIRST_DELAY_MS);
    }
  }
}
