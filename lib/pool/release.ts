import type { PoolClient } from 'pg';
import { isServerRestartError } from '../errors/sql-state.js';
import { PoolStatementTimeoutError } from '../pool.exceptions.js';
import type { RemoveReason } from '../pool.events.js';
import { sharedHandle } from './shared-handle.js';
import { errorMessage, type PoolState, type ReleaserPart } from './pool-state.js';
import type { PooledConnection } from './pooled-connection.js';
import { releaseAction, retireOrPool, type ReleaseContext } from './release-policy.js';
import { RESET_SESSION_SQL } from './session-reset.js';
import { sendWithin } from './statement-deadline.js';

/** How long shutdown waits for one connection's socket to close before destroying it. */
const SOCKET_CLOSE_WAIT_MS = 2000;

/** pg-pool's `log` wording for a removed connection, by reason. */
const REMOVE_LOG: Partial<Record<RemoveReason, string>> = {
  'max-uses': 'remove expended client',
  lifetime: 'remove expired client',
  idle: 'remove idle client',
};

/**
 * Where a connection goes when its borrower is done with it (HikariCP's `requite` and
 * `closeConnection`), by the rules of release-policy.ts: pooled again (its session reset first
 * when the borrower changed it), rolled back, checked for a demoted primary, retired, or
 * destroyed; and the one way a connection leaves the pool.
 */
export class Releaser implements ReleaserPart {
  readonly #s: PoolState;
  /** The release rules' inputs, in one reused object (no allocation per release). */
  readonly #ctx: { generation: number; maxUses: number; primary: boolean; now: number };
  /** Session state a borrower changed is reset on release (`resetOnRelease`, never behind PgBouncer with 'auto'). */
  readonly #resets: boolean;
  /** Every checkout is reset (`resetOnRelease: 'always'`). */
  readonly resetAlways: boolean;

  constructor(s: PoolState) {
    this.#s = s;
    const config = s.config;
    this.#ctx = { generation: 0, maxUses: config.maxUses, primary: config.role === 'primary', now: 0 };
    const reset = config.resetOnRelease ?? 'auto';
    this.#resets = reset === 'always' || (reset === 'auto' && !config.pgbouncer);
    this.resetAlways = reset === 'always';
  }

  /** A connection given back with `err` (what its borrower ended with, if anything); `quiet`: the library's own checkout. */
  release(conn: PooledConnection, err: unknown, quiet: boolean): void {
    const s = this.#s;
    const now = Date.now();
    if (!quiet) {
      s.counters.released++;
      if (conn.acquiredAt !== 0) {
        s.usageTime.record(now - conn.acquiredAt);
        if (s.host.emitting) s.emit({ type: 'release', heldMs: now - conn.acquiredAt });
      }
      if (s.facade.heard) s.facade.emit('release', err !== null && typeof err === 'object' ? err : undefined, sharedHandle(conn));
    }
    if (conn.leakTimer !== undefined) s.leaks.clear(conn, now);
    conn.acquiredAt = 0;
    if (s.ended || !s.bag.has(conn)) {
      void this.remove(conn, 'shutdown');
      return;
    }
    const action = releaseAction(conn, err, this.#context(now));
    switch (action.kind) {
      case 'pool':
        this.#poolClean(conn, now);
        return;
      case 'retire':
        s.counters.evictions++;
        void this.remove(conn, action.reason);
        return;
      case 'destroy': {
        const cause = conn.brokenBy ?? err;
        if (action.connectionError) s.counters.connectionErrors++;
        void this.remove(conn, action.reason);
        if (isServerRestartError(cause)) s.node.evictAll();
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

  /** Pools a connection again: straight to the oldest waiter, else on top of the idle stack. `now`: `Date.now()`. */
  requite(conn: PooledConnection, now: number): void {
    const s = this.#s;
    if (s.ended) {
      void this.remove(conn, 'shutdown');
      return;
    }
    conn.lastReleasedAt = now;
    if (s.bag.requite(conn) && s.factory.exitOnIdle) (conn.client as unknown as { unref(): void }).unref();
  }

  /** Takes a connection out of the pool and closes it (destroying it when broken). */
  remove(conn: PooledConnection, reason: RemoveReason): Promise<void> {
    const s = this.#s;
    clearTimeout(conn.lifetimeTimer);
    if (!s.bag.remove(conn)) return conn.close(0);
    conn.removeReason ??= reason;
    s.counters.removed++;
    const log = s.factory.log;
    if (log !== undefined) log(REMOVE_LOG[conn.removeReason] ?? `remove client (${conn.removeReason})`);
    if (conn.leakTimer !== undefined) s.leaks.clear(conn, Date.now());
    if (s.host.emitting) s.emit({ type: 'remove', reason: conn.removeReason });
    if (s.facade.heard) s.facade.emit('remove', sharedHandle(conn));
    const closed = conn.broken ? (conn.destroy(conn.abortedBy ?? new Error('connection broken')), conn.close(0)) : conn.close(SOCKET_CLOSE_WAIT_MS);
    s.acquirer.pulse();
    if (s.ended) {
      s.closing.push(closed);
      this.settleEnd();
    }
    return closed;
  }

  /** After an end: once no connection is left, the end settles when their sockets closed. */
  settleEnd(): void {
    const s = this.#s;
    const resolve = s.endResolve;
    if (resolve === undefined || s.bag.total !== 0) return;
    s.endResolve = undefined;
    void Promise.all(s.closing).then(() => resolve());
  }

  /** An idle connection failed (a socket error, the server ended it): dropped, and heard by the `error` listeners. */
  onClientError(conn: PooledConnection, err: unknown): void {
    const s = this.#s;
    if (!s.bag.takeIdle(conn)) return;
    s.counters.idleErrors++;
    if (s.host.emitting) s.emit({ type: 'error', kind: 'idle-client', message: s.host.scrub(errorMessage(err)) });
    if (s.facade.heard && s.facade.listenerCount('error') !== 0) {
      const client = sharedHandle(conn);
      if (err !== null && typeof err === 'object') (err as { client?: unknown }).client = client;
      s.facade.emit('error', err, client);
    }
    void this.remove(conn, 'error');
    if (isServerRestartError(err)) s.node.evictAll();
  }

  #context(now: number): ReleaseContext {
    const ctx = this.#ctx;
    ctx.generation = this.#s.generation;
    ctx.primary = this.#s.role === 'primary';
    ctx.now = now;
    return ctx;
  }

  /** ROLLBACK bounded by `validationTimeoutMs`: a connection that cannot roll back is closed. */
  #rollbackAndRelease(conn: PooledConnection): void {
    const s = this.#s;
    s.counters.rollbacksOnRelease++;
    sendWithin(conn, 'ROLLBACK', undefined, s.config.validationTimeoutMs, s.where).then(
      () => this.#settle(conn),
      (err: unknown) => {
        if (err instanceof PoolStatementTimeoutError) s.timedOut(err);
        s.counters.evictions++;
        void this.remove(conn, 'rollback-failed');
      },
    );
  }

  /** Pools a connection, after resetting the session state its borrower may have changed. */
  #poolClean(conn: PooledConnection, now: number): void {
    if (!conn.dirty) {
      this.requite(conn, now);
      return;
    }
    conn.dirty = false;
    if (!this.#resets) {
      this.requite(conn, now);
      return;
    }
    const s = this.#s;
    this.#resetSession(conn).then(
      () => {
        s.counters.sessionResets++;
        if (s.ended || !s.bag.has(conn)) void this.remove(conn, 'shutdown');
        else this.requite(conn, Date.now());
      },
      (err: unknown) => {
        if (err instanceof PoolStatementTimeoutError) s.timedOut(err);
        s.counters.evictions++;
        if (s.host.emitting) s.emit({ type: 'error', kind: 'query', message: `session reset failed: ${s.host.scrub(errorMessage(err))}` });
        void this.remove(conn, 'reset-failed');
      },
    );
  }

  /**
   * `DISCARD ALL` step by step (the statement cache survives), bounded by `validationTimeoutMs`;
   * then the connection hook runs again, so what it set up is back.
   */
  #resetSession(conn: PooledConnection): Promise<unknown> {
    const s = this.#s;
    const reset = sendWithin(conn, RESET_SESSION_SQL, undefined, s.config.validationTimeoutMs, s.where);
    return conn.hooked ? reset.then(() => s.host.initClient(conn.client as unknown as PoolClient, s.node)) : reset;
  }

  /** After a clean rollback or recovery check: retire or pool. */
  #settle(conn: PooledConnection): void {
    const s = this.#s;
    if (s.ended || !s.bag.has(conn)) return;
    const now = Date.now();
    const action = retireOrPool(conn, this.#context(now));
    if (action.kind === 'pool') this.#poolClean(conn, now);
    else {
      s.counters.evictions++;
      void this.remove(conn, action.kind === 'retire' ? action.reason : 'error');
    }
  }

  /**
   * 25006 from the primary: a read-only transaction the caller asked for, or a demoted server.
   * Asks the server on the same connection (bounded); if it is in recovery, every connection is
   * evicted so new ones (re-resolving the host) reach the current primary.
   */
  #checkDemoted(conn: PooledConnection): void {
    const s = this.#s;
    const bound = s.config.validationTimeoutMs;
    const tx = conn.client.getTransactionStatus?.() ?? null;
    const rollback = tx === 'T' || tx === 'E' ? sendWithin(conn, 'ROLLBACK', undefined, bound, s.where) : Promise.resolve();
    rollback
      .then(() => sendWithin<{ recovering: boolean }>(conn, 'SELECT pg_is_in_recovery() AS recovering', undefined, bound, s.where))
      .then(
        (res) => {
          if (res.rows[0]?.recovering !== true) {
            this.#settle(conn);
            return;
          }
          s.counters.demotions++;
          s.counters.evictions++;
          void this.remove(conn, 'evicted');
          const message =
            `The primary "${s.database}/${s.name}" (${s.config.address}) is in recovery (read-only): it was demoted. ` +
            'Every connection of its pool is closed so new ones reach the current primary.';
          s.host.warn(message);
          if (s.host.emitting) s.emit({ type: 'error', kind: 'read-only', message });
          s.node.evictAll();
        },
        () => {
          void this.remove(conn, 'error');
        },
      );
  }
}
