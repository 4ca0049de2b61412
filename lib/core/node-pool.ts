import pg from 'pg';
import type { PoolClient, QueryConfig, QueryResult, QueryResultRow } from 'pg';
import type { ResolvedNode } from '../config/resolve-options.js';
import { PoolAcquireTimeoutError, PoolConnectionError, PoolUnavailableError, type PoolStateSnapshot } from '../pool.exceptions.js';
import type { PoolEvent, RemoveReason } from '../pool.events.js';
import { isConnectionError, isServerRestartError } from './errors.js';
import { LatencyHistogram, NodeCounters } from './node-stats.js';

const META = Symbol('nestjs-pg-pools.client');
const BORN = Symbol('nestjs-pg-pools.born');
const LIFETIME_JITTER = 0.025;
const ACQUIRE_QUEUE_TIMEOUT = 'timeout exceeded when trying to connect';

interface ClientMeta {
  expiresAt: number;
  generation: number;
  lastReleasedAt: number;
  acquiredAt: number;
  ready: boolean;
  broken: boolean;
  leaked: boolean;
  stack: string | undefined;
  leakTimer: NodeJS.Timeout | undefined;
  removeReason: RemoveReason | undefined;
}

type MetaClient = PoolClient & { [META]: ClientMeta; [BORN]?: number; getTransactionStatus?: () => string | null };

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

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

/**
 * One server's pool: a `pg.Pool` plus what pg-pool leaves out — finite acquire timeout with a
 * useful error, validation on borrow, lifetimes with jitter, release hygiene, leak detection,
 * soft eviction after a server restart and a circuit breaker. Every method is safe to call on
 * a hot path: no per-query allocation beyond the promise chain, counters are plain fields.
 */
export class NodePool {
  readonly pool: pg.Pool;
  readonly counters = new NodeCounters();
  readonly acquireTime = new LatencyHistogram();
  readonly queryTime = new LatencyHistogram();
  readonly connectTime = new LatencyHistogram();
  readonly usageTime = new LatencyHistogram();
  #generation = 0;
  #endPromise: Promise<void> | undefined;
  #failures = 0;
  #openUntil = 0;
  #trialInFlight = false;
  #lastFailure = '';

  constructor(
    readonly config: ResolvedNode,
    private readonly host: NodeHost,
  ) {
    const poolConfig = config.poolConfig;
    const Base = (poolConfig.Client as typeof pg.Client | undefined) ?? pg.Client;
    const BornClient = class extends Base {
      constructor(...args: ConstructorParameters<typeof pg.Client>) {
        super(...args);
        (this as unknown as MetaClient)[BORN] = performance.now();
      }
    };
    this.pool = new pg.Pool({ ...poolConfig, Client: BornClient });
    this.pool.on('connect', (client) => this.#onConnect(client as MetaClient));
    this.pool.on('error', (err, client) => this.#onIdleError(err, client as MetaClient));
    this.pool.on('remove', (client) => this.#onRemove(client as MetaClient));
  }

  get name(): string {
    return this.config.name;
  }

  get role() {
    return this.config.role;
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

  acquire(): Promise<PoolClient> {
    if (this.#openUntil !== 0) {
      const refused = this.#breakerGate();
      if (refused) return Promise.reject(refused);
    }
    const t0 = performance.now();
    return this.pool.connect().then(
      (client) => this.#checkout(client as MetaClient, t0, 0),
      (err: unknown) => this.#acquireFailed(err, t0),
    );
  }

  /** Runs one statement on a client of this pool and always gives the client back. */
  query<R extends QueryResultRow = any>(text: QueryInput, values?: unknown[]): Promise<QueryResult<R>> {
    return this.acquire().then((client) => this.run<R>(client, text, values, true));
  }

  /** Runs a statement on a client already taken from this pool; releases it when `release` is set. */
  run<R extends QueryResultRow = any>(client: PoolClient, text: QueryInput, values: unknown[] | undefined, release: boolean): Promise<QueryResult<R>> {
    const t0 = performance.now();
    this.counters.queries++;
    return client.query<R>(text as string, values).then(
      (res) => {
        this.#queryDone(t0, text);
        if (release) this.release(client);
        return res;
      },
      (err: unknown) => {
        this.#queryDone(t0, text);
        this.counters.queryErrors++;
        if (release) this.release(client, err);
        else if (isConnectionError(err)) (client as MetaClient)[META].broken = true;
        throw err;
      },
    );
  }

  /**
   * Gives a client back. A connection-class error destroys it (and, for a server shutdown,
   * soft-evicts the rest of the pool); an open transaction is rolled back first; a retired or
   * broken client is closed instead of pooled.
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
    const tx = c.getTransactionStatus ? c.getTransactionStatus() : null;
    if (tx === 'T' || tx === 'E') {
      this.#rollbackAndRelease(c, meta);
      return;
    }
    if (meta.generation !== this.#generation || (meta.expiresAt !== 0 && now >= meta.expiresAt)) {
      this.counters.evictions++;
      meta.removeReason = meta.generation !== this.#generation ? 'evicted' : 'lifetime';
      c.release(true);
      return;
    }
    meta.lastReleasedAt = now;
    c.release();
  }

  /**
   * Marks every current connection stale: idle ones are closed now, checked-out ones when they
   * come back. Used after a server restart or a failover.
   */
  evictAll(): void {
    this.#generation++;
    const internal = this.pool as unknown as { _idle?: Array<{ client: MetaClient }>; _remove?: (c: MetaClient) => void };
    if (Array.isArray(internal._idle) && typeof internal._remove === 'function') {
      for (const item of internal._idle.slice()) {
        item.client[META].removeReason = 'evicted';
        this.counters.evictions++;
        internal._remove.call(this.pool, item.client);
      }
    }
  }

  /** Opens the first connection (with backoff + jitter), then up to `min`. Throws `PoolConnectionError`. */
  async warmUp(): Promise<void> {
    const attempts = this.host.retryAttempts;
    let delay = this.host.retryDelayMs;
    let lastError = '';
    for (let attempt = 1; attempt <= attempts; attempt++) {
      try {
        const client = await this.pool.connect();
        try {
          await this.#checkout(client as MetaClient, performance.now(), 0);
        } finally {
          this.release(client);
        }
        lastError = '';
        break;
      } catch (err) {
        lastError = this.host.scrub(err instanceof Error ? err.message : String(err));
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
      throw new PoolConnectionError(this.config.database, this.name, this.config.address, attempts, lastError);
    }
    const missing = this.config.min - this.pool.totalCount;
    if (missing > 0) {
      const clients = await Promise.allSettled(Array.from({ length: missing }, () => this.acquire()));
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
      this.#endPromise = this.pool.end().catch((err: unknown) => {
        this.host.warn(`Ending pool "${this.config.database}/${this.name}" failed: ${this.host.scrub(String(err))}`);
      });
    }
    return this.#endPromise;
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

  #onConnect(client: MetaClient): void {
    const now = Date.now();
    const lifetime = this.config.maxLifetimeMs;
    client[META] = {
      expiresAt: lifetime > 0 ? now + lifetime * (1 - LIFETIME_JITTER + Math.random() * 2 * LIFETIME_JITTER) : 0,
      generation: this.#generation,
      lastReleasedAt: 0,
      acquiredAt: 0,
      ready: false,
      broken: false,
      leaked: false,
      stack: undefined,
      leakTimer: undefined,
      removeReason: undefined,
    };
    client.on('error', () => {
      client[META].broken = true;
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
    if (this.host.emitting) {
      const reason = client[META]?.removeReason ?? (this.ended ? 'shutdown' : 'idle');
      this.#emit({ type: 'remove', reason });
    }
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
    if (meta.lastReleasedAt !== 0 && now - meta.lastReleasedAt > this.config.validateIdleAfterMs) {
      return client.query('').then(
        () => this.#handOut(client, meta, t0, now),
        (err: unknown) => {
          this.counters.validationFailures++;
          meta.removeReason = 'validation';
          if (this.host.emitting) this.#emit({ type: 'error', kind: 'validation', message: this.host.scrub(String((err as Error)?.message ?? err)) });
          client.release(true);
          return this.#retryCheckout(t0, attempt);
        },
      );
    }
    return this.#handOut(client, meta, t0, now);
  }

  #retryCheckout(t0: number, attempt: number): Promise<PoolClient> {
    if (attempt >= this.config.max + 1) {
      return Promise.reject(new PoolConnectionError(this.config.database, this.name, this.config.address, attempt, 'every pooled connection was stale'));
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
    if (this.config.leakDetectionThresholdMs > 0) this.#armLeak(meta);
    if (this.host.emitting) this.#emit({ type: 'acquire', waitMs: waited });
    return client;
  }

  #acquireFailed(err: unknown, t0: number): never {
    const message = (err as Error)?.message ?? '';
    if (message === ACQUIRE_QUEUE_TIMEOUT || message.includes('connection timeout')) {
      this.counters.acquireTimeouts++;
      const timeoutError = new PoolAcquireTimeoutError(
        this.config.database,
        this.name,
        this.role,
        Math.round(performance.now() - t0),
        this.state(),
        err,
      );
      if (message !== ACQUIRE_QUEUE_TIMEOUT) {
        (timeoutError as { connectionError?: boolean }).connectionError = true;
        this.#breakerFailure(message);
      }
      if (this.host.emitting) this.#emit({ type: 'error', kind: 'acquire-timeout', message: timeoutError.message });
      throw timeoutError;
    }
    if (isConnectionError(err)) {
      this.counters.connectionErrors++;
      this.#breakerFailure(this.host.scrub(message));
      if (this.host.emitting) this.#emit({ type: 'error', kind: 'connection', message: this.host.scrub(message) });
    }
    else if (this.#trialInFlight) this.#trialInFlight = false;
    if (err instanceof Error) err.message = this.host.scrub(err.message);
    throw err;
  }

  #queryDone(t0: number, text: QueryInput): void {
    const ms = performance.now() - t0;
    this.queryTime.record(ms);
    const slow = this.host.slowQueryMs;
    if (slow > 0 && ms >= slow) {
      this.counters.slowQueries++;
      if (this.host.emitting) {
        const sql = typeof text === 'string' ? text : text.text;
        this.#emit({ type: 'slow-query', durationMs: ms, text: sql.length > 500 ? `${sql.slice(0, 500)}…` : sql });
      }
    }
  }

  #rollbackAndRelease(client: MetaClient, meta: ClientMeta): void {
    this.counters.rollbacksOnRelease++;
    client.query('ROLLBACK').then(
      () => {
        meta.lastReleasedAt = Date.now();
        client.release();
      },
      () => {
        meta.removeReason = 'rollback-failed';
        this.counters.evictions++;
        client.release(true);
      },
    );
  }

  #armLeak(meta: ClientMeta): void {
    meta.stack = new Error('Client acquired here').stack;
    meta.leaked = false;
    const threshold = this.config.leakDetectionThresholdMs;
    meta.leakTimer = setTimeout(() => {
      meta.leaked = true;
      this.counters.leaks++;
      const stack = meta.stack ?? '';
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
    meta.stack = undefined;
  }

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
      if (!reopened) this.counters.breakerOpens++;
      if (this.host.emitting) this.#emit({ type: 'breaker-open', retryAt: this.#openUntil, failures: this.#failures });
    }
  }
}
