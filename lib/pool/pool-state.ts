import type { PoolClient, QueryConfig, QueryResult, QueryResultRow } from 'pg';
import { pgPoolOptionsView } from '../config/pg-pool-names.js';
import type { ResolvedNode } from '../config/resolve-options.js';
import { LatencyHistogram, NodeCounters } from './node-stats.js';
import { PoolAcquireTimeoutError, PoolUnavailableError, type PoolServerFullError, type PoolStateSnapshot } from '../pool.exceptions.js';
import type { NodeRole } from '../pool.interfaces.js';
import type { PoolEvent, RemoveReason } from '../pool.events.js';
import type { CompiledSessionContext, SessionContexts } from '../session/session-context.js';
import { CircuitBreaker } from './circuit-breaker.js';
import type { ConnectionBag } from './connection-bag.js';
import { LeakDetector } from './leak-detector.js';
import { PoolFacade } from './pool-facade.js';
import type { PooledConnection } from './pooled-connection.js';

/** The node pool as its parts see it (node-pool.ts). */
export interface PoolNode {
  query<R extends QueryResultRow>(text: string | QueryConfig, values?: unknown[]): Promise<QueryResult<R>>;
  acquire(): Promise<PoolClient>;
  /** A client for `pg.Pool.connect()`: the connection's own shared handle (one object per physical connection). */
  acquireShared(): Promise<PoolClient>;
  release(client: PoolClient, err?: unknown): void;
  evictAll(): void;
  reachable(): void;
}

/** What a node pool needs from the database that owns it (`N`: the node pool, as the host knows it). */
export interface PoolHost<N = PoolNode> {
  readonly slowQueryMs: number;
  readonly retryAttempts: number;
  readonly retryDelayMs: number;
  readonly breaker: { readonly failureThreshold: number; readonly resetTimeoutMs: number };
  /** True when someone listens to events; events are only built then. */
  readonly emitting: boolean;
  emit(event: PoolEvent): void;
  /** Runs the app's connection hook; resolves `true` when there is one (it may have changed session settings). */
  initClient(client: PoolClient, node: N): Promise<boolean | void>;
  warn(message: string): void;
  scrub(message: string): string;
  /** A statement of this node got no answer within its deadline (the node may be hung). */
  statementTimedOut?(node: N, err: Error): void;
  /** The node's circuit breaker opened: connections to it failed as a node that is gone (`lastFailure` is the last one's message). */
  breakerOpened?(node: N, lastFailure: string): void;
  /**
   * The session contexts (role, settings) of the caller's scope, per database, read on every
   * statement; `undefined` outside any scope. The routing scope holds them; the host reads it.
   */
  sessionContexts?(): SessionContexts | undefined;
  /** A session context is applied on this node (debug log; called once per context, only when `debugging`). */
  contextApplied?(node: N, ctx: CompiledSessionContext): void;
  readonly debugging?: boolean;
}

/** How a caller waiting for a connection hears the outcome: the connection, or the error. */
export type Done = (err: Error | undefined, conn: PooledConnection | undefined) => void;

/** The connection factory (connection-factory.ts), as the other parts use it. */
export interface FactoryPart {
  readonly log: ((message: string, ...rest: unknown[]) => void) | undefined;
  readonly exitOnIdle: boolean;
  /** No connection opens before this `Date.now()` (a full server). */
  readonly fullUntil: number;
  open(t0: number, deadline: number, done: Done, background?: boolean): void;
  opening(): 'open' | 'wait' | PoolServerFullError;
  openDetached(suffix: string, timeoutMs: number): Promise<PooledConnection>;
}

/** The checkout path (acquirer.ts), as the other parts use it. */
export interface AcquirerPart {
  /** `watched`: lent to the caller's code, so leak detection watches it. */
  borrow(done: Done, watched?: boolean): void;
  borrowed(watched?: boolean): Promise<PooledConnection>;
  borrowedAs<T>(as: (conn: PooledConnection) => T, watched?: boolean): Promise<T>;
  acquire(t0: number, deadline: number, attempt: number, done: Done, quiet?: boolean, mayOpen?: boolean): void;
  pulse(): void;
}

/** The release rules (release.ts), as the other parts use them. */
export interface ReleaserPart {
  readonly resetAlways: boolean;
  release(conn: PooledConnection, err: unknown, quiet: boolean): void;
  requite(conn: PooledConnection, now: number): void;
  remove(conn: PooledConnection, reason: RemoveReason): Promise<void>;
  settleEnd(): void;
  onClientError(conn: PooledConnection, err: unknown): void;
}

/** The refill (refill.ts), as the other parts use it. */
export interface RefillPart {
  readonly opening: number;
  schedule(delayMs: number): void;
}

export function errorMessage(err: unknown): string {
  const message = (err as { message?: unknown } | null)?.message;
  return typeof message === 'string' ? message : String(err);
}

/**
 * What the parts of one node pool share (HikariCP's `HikariPool` fields): its settings and host,
 * statistics, the connection generation, its role, the end state, and the parts themselves, each
 * reaching the others through here. Plain fields: read on the hot path.
 */
export class PoolState {
  readonly counters = new NodeCounters();
  readonly acquireTime = new LatencyHistogram();
  readonly queryTime = new LatencyHistogram();
  readonly connectTime = new LatencyHistogram();
  readonly usageTime = new LatencyHistogram();
  /** `performance.now()` of the last answer any connection of this node received. */
  lastAnswerAt = 0;
  /** Connections of an older generation are retired (an eviction, a role change). */
  generation = 0;
  role: NodeRole;
  /** The node monitor declared the node hung (`abort`): a caller whose connection failed then gets this, not another try here. */
  hung: Error | undefined = undefined;
  endPromise: Promise<void> | undefined = undefined;
  endResolve: (() => void) | undefined = undefined;
  /** The end closes lent connections and those still opening too (the module's shutdown). */
  forcedEnd = false;
  /** Sockets closing since the end. */
  readonly closing: Promise<void>[] = [];
  readonly where: () => { database: string; node: string; address: string };
  readonly database: string;
  readonly name: string;
  bag!: ConnectionBag<PooledConnection>;
  breaker!: CircuitBreaker;
  leaks!: LeakDetector;
  facade!: PoolFacade;
  factory!: FactoryPart;
  acquirer!: AcquirerPart;
  releaser!: ReleaserPart;
  refill!: RefillPart;

  constructor(
    readonly config: ResolvedNode,
    readonly host: PoolHost,
    readonly node: PoolNode,
  ) {
    this.role = config.role;
    this.database = config.database;
    this.name = config.name;
    this.where = () => ({ database: config.database, node: config.name, address: config.address });
  }

  get ended(): boolean {
    return this.endPromise !== undefined;
  }

  get inUse(): number {
    return this.bag.total - this.bag.idle;
  }

  state(): PoolStateSnapshot {
    const total = this.bag.total;
    const idle = this.bag.idle;
    return { total, idle, inUse: total - idle, waiting: this.bag.waiting, max: this.config.max };
  }

  emit(partial: Record<string, unknown> & { type: PoolEvent['type'] }): void {
    this.host.emit({ database: this.database, node: this.name, role: this.role, at: Date.now(), ...partial } as PoolEvent);
  }

  timeoutError(t0: number, cause: unknown): PoolAcquireTimeoutError {
    this.counters.acquireTimeouts++;
    const timeoutError = new PoolAcquireTimeoutError(this.database, this.name, this.role, Math.round(performance.now() - t0), this.state(), cause);
    if (this.host.emitting) this.emit({ type: 'error', kind: 'acquire-timeout', message: timeoutError.message });
    return timeoutError;
  }

  unavailable(): PoolUnavailableError {
    const b = this.breaker;
    return new PoolUnavailableError(
      this.database,
      this.name,
      this.config.address,
      new Date(Math.max(b.retryAt ?? 0, Date.now())),
      `${b.failures} consecutive connection failures (last: ${b.lastFailure})`,
    );
  }

  /** A statement missed its deadline: counted, reported, and told to the host (the node may be hung). */
  timedOut(err: Error): void {
    this.counters.statementTimeouts++;
    if (this.host.emitting) this.emit({ type: 'error', kind: 'query', message: err.message });
    this.host.statementTimedOut?.(this.node, err);
  }
}

/** The node's circuit breaker: opening warns once, reports, tells the host, and leaves the next trial to the refill. */
export function nodeBreaker(s: PoolState): CircuitBreaker {
  const { config, host } = s;
  return new CircuitBreaker(() => host.breaker, {
    opened: (failures, retryAt, last, reopened) => {
      if (!reopened) {
        s.counters.breakerOpens++;
        host.warn(
          `Circuit breaker of "${config.database}/${config.name}" (${config.address}) opened after ${failures} consecutive connection failures ` +
            `(last: ${last}). Calls fail fast with PoolUnavailableError until ${new Date(retryAt).toISOString()} or until a background reconnect succeeds.`,
        );
      }
      if (host.emitting) s.emit({ type: 'breaker-open', retryAt, failures });
      if (!reopened) host.breakerOpened?.(s.node, last);
      // The refill makes the next trial, when the breaker lets one through: no reconnect storm.
      s.refill.schedule(Math.max(0, retryAt - Date.now()));
    },
    closed: () => {
      if (host.emitting) s.emit({ type: 'breaker-closed' });
      s.refill.schedule(0);
    },
  });
}

/** The node's leak detection: a warning (with where the client was taken) and an event per leak, a note when it comes back. */
export function nodeLeakDetector(s: PoolState): LeakDetector {
  const { config, host } = s;
  return new LeakDetector(config.leakDetectionThresholdMs, {
    leaked: (_conn, heldMs, stack) => {
      s.counters.leaks++;
      host.warn(`Possible connection leak on "${config.database}/${config.name}": a client has been held for more than ${heldMs}ms. Acquired at:\n${stack}`);
      if (host.emitting) s.emit({ type: 'leak', heldMs, stack });
    },
    returned: (_conn, heldMs) => {
      host.warn(`Previously reported leaked client of "${config.database}/${config.name}" was returned after ${heldMs}ms.`);
    },
  });
}

/** The node's `pg.Pool` face over its bag and statement runner; `end` is what the face's `end()` does. */
export function nodeFacade(s: PoolState, end: () => Promise<void>): PoolFacade {
  const { config, bag, node } = s;
  return new PoolFacade({
    get totalCount() {
      return bag.total;
    },
    get idleCount() {
      return bag.idle;
    },
    get waitingCount() {
      return bag.waiting;
    },
    get expiredCount() {
      const now = Date.now();
      let expired = 0;
      for (const conn of bag.items()) if (conn.acquiredAt !== 0 && conn.expiresAt !== 0 && now >= conn.expiresAt) expired++;
      return expired;
    },
    get ended() {
      return s.ended;
    },
    get finished() {
      return s.ended && bag.total === 0;
    },
    options: pgPoolOptionsView(config),
    query: (text, values) => node.query(text, values),
    acquire: () => node.acquireShared(),
    end,
  });
}
