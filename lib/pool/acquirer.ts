import { PoolConnectionError, PoolEndedError, PoolServerFullError } from '../pool.exceptions.js';
import type { RemoveReason } from '../pool.events.js';
import { sharedHandle } from './shared-handle.js';
import { errorMessage, type Done, type PoolState, type AcquirerPart } from './pool-state.js';
import type { PooledConnection } from './pooled-connection.js';
import { needsValidation, validate } from './validation.js';

const asIs = (conn: PooledConnection) => conn;

/** Gives an error the stack of the code awaiting it (call from a promise reaction, like pg does). */
function withCallerStack(err: unknown): never {
  if (err instanceof Error) Error.captureStackTrace(err);
  throw err;
}

/**
 * Rejects a promise (through its `resolve`) with `err`, re-anchoring the stack at the code that
 * awaits it. The chain is linked before `err` is thrown into it, so the stack walk reaches the caller.
 */
export function rejectAtCaller(resolve: (value: PromiseLike<never>) => void, err: unknown): void {
  let throwIn!: (reason: unknown) => void;
  const failed = new Promise<never>((_, reject) => {
    throwIn = reject;
  });
  resolve(failed.catch(withCallerStack));
  throwIn(err);
}

/**
 * Checks connections out of the bag for callers (HikariCP's `getConnection`): through the circuit
 * breaker, an idle connection (retired when stale, validated when idle long enough), else a new
 * one while below `max`, else a place in the bag's waiters until the acquire deadline; armed for
 * leak detection; counted and reported as pg-pool's `acquire`.
 */
export class Acquirer implements AcquirerPart {
  readonly #s: PoolState;

  constructor(s: PoolState) {
    this.#s = s;
  }

  /**
   * A checked-out connection for a caller, through the breaker; `done` gets it or the error.
   * `watched`: the connection is lent to the caller's code (a client, a transaction), so leak
   * detection watches it; the library's own statements give theirs back when they answer.
   */
  borrow(done: Done, watched = false): void {
    const s = this.#s;
    const t0 = performance.now();
    const breaker = s.breaker;
    let trial = false;
    // An open breaker stops opening connections; an idle one is still served (validated on borrow).
    if (breaker.isOpen && s.bag.idle === 0) {
      if (!breaker.admit()) {
        done(s.unavailable(), undefined);
        return;
      }
      trial = true;
    }
    const mayOpen = trial || !breaker.isOpen;
    // Taken here, while the caller's frames are still on the stack; formatted only if it leaks.
    const origin = watched && s.leaks.enabled ? new Error('Client acquired here') : undefined;
    const deadline = t0 + s.config.acquireTimeoutMs;
    if (!trial && origin === undefined) {
      this.acquire(t0, deadline, 0, done, false, mayOpen);
      return;
    }
    this.acquire(
      t0,
      deadline,
      0,
      (err, conn) => {
        if (err !== undefined) {
          if (trial) breaker.trialAbandoned();
          done(err, undefined);
          return;
        }
        if (origin !== undefined) s.leaks.arm(conn!, origin);
        done(undefined, conn);
      },
      false,
      mayOpen,
    );
  }

  /** `borrow` as a promise; a failure carries the stack of the code awaiting it. */
  borrowed(watched = false): Promise<PooledConnection> {
    return this.borrowedAs(asIs, watched);
  }

  /** `borrowed`, resolved with `as(conn)` (a lent handle), built as the connection arrives rather than one promise step later. */
  borrowedAs<T>(as: (conn: PooledConnection) => T, watched = false): Promise<T> {
    return new Promise<T>((resolve) => this.borrow((err, conn) => (err !== undefined ? rejectAtCaller(resolve, err) : resolve(as(conn!))), watched));
  }

  /**
   * Finds a connection (idle, new, or by waiting) and checks it out; `done` gets it or the error.
   * `quiet`: the library's own statement (no acquire event, no counts); `mayOpen`: false for a
   * caller let through an open breaker only because a connection was idle.
   */
  acquire(t0: number, deadline: number, attempt: number, done: Done, quiet = false, mayOpen = true): void {
    const s = this.#s;
    if (s.endPromise !== undefined) {
      done(new PoolEndedError(s.database, s.name), undefined);
      return;
    }
    const bag = s.bag;
    const conn = bag.take();
    if (conn !== undefined) {
      this.#checkout(conn, t0, deadline, attempt, done, quiet, mayOpen);
      return;
    }
    // A connection the refill is opening goes to the first waiter: wait for it rather than open one more.
    if (!mayOpen) {
      done(s.unavailable(), undefined);
      return;
    }
    const max = s.config.max;
    const opening = bag.total < max ? s.factory.opening() : 'wait';
    if (opening instanceof PoolServerFullError) {
      done(opening, undefined);
      return;
    }
    if (opening === 'open' && bag.total < max && s.refill.opening <= bag.waiting) {
      s.factory.open(t0, deadline, (err, fresh) => {
        if (err === undefined) this.#handOut(fresh!, Date.now(), t0, done, quiet);
        // A full server: wait for one of the open connections to come back rather than fail.
        else if (err instanceof PoolServerFullError && s.inUse > 0 && !s.ended) this.#await(t0, deadline, attempt, done, quiet, mayOpen);
        else done(err, undefined);
      });
      return;
    }
    this.#await(t0, deadline, attempt, done, quiet, mayOpen);
  }

  /** After a connection left: a waiter may now get a new one. */
  pulse(): void {
    const s = this.#s;
    if (s.ended) return;
    const bag = s.bag;
    if (bag.waiting !== 0 && s.factory.opening() !== 'open') return;
    while (bag.waiting !== 0 && bag.total < s.config.max) {
      const waiter = bag.nextWaiter()!;
      s.factory.open(performance.now(), waiter.deadline, waiter.callback);
    }
    if (bag.total < s.config.min) s.refill.schedule(0);
  }

  /** Queues the caller for the next connection given back (or opened for it), until `deadline`. */
  #await(t0: number, deadline: number, attempt: number, done: Done, quiet: boolean, mayOpen: boolean): void {
    this.#s.bag.wait(deadline, (err, pooled) => (err !== undefined ? done(err, undefined) : this.#checkout(pooled!, t0, deadline, attempt, done, quiet, mayOpen)));
  }

  #checkout(conn: PooledConnection, t0: number, deadline: number, attempt: number, done: Done, quiet: boolean, mayOpen: boolean): void {
    const s = this.#s;
    const now = Date.now();
    if (conn.broken || conn.generation !== s.generation || (conn.expiresAt !== 0 && now >= conn.expiresAt)) {
      const reason: RemoveReason = conn.broken ? 'error' : conn.generation !== s.generation ? 'evicted' : 'lifetime';
      if (!conn.broken) s.counters.evictions++;
      void s.releaser.remove(conn, reason);
      this.#retry(t0, deadline, attempt, done, quiet, mayOpen);
      return;
    }
    const config = s.config;
    if (needsValidation(conn, now, config.validateIdleAfterMs)) {
      const bound = Math.max(1, Math.min(config.validationTimeoutMs, Math.ceil(config.acquireTimeoutMs / 2)));
      conn.acquiredAt = now;
      validate(conn, bound, s.where).then(
        () => this.#handOut(conn, Date.now(), t0, done, quiet),
        (err: unknown) => {
          conn.acquiredAt = 0;
          s.counters.validationFailures++;
          if (s.host.emitting) s.emit({ type: 'error', kind: 'validation', message: s.host.scrub(errorMessage(err)) });
          void s.releaser.remove(conn, 'validation');
          this.#retry(t0, deadline, attempt, done, quiet, mayOpen);
        },
      );
      return;
    }
    this.#handOut(conn, now, t0, done, quiet);
  }

  #retry(t0: number, deadline: number, attempt: number, done: Done, quiet: boolean, mayOpen: boolean): void {
    const s = this.#s;
    // The node was declared hung while this caller was validating or checking out: it fails over
    // now (a read is retried elsewhere) rather than opening a connection to the silent server.
    if (s.hung !== undefined) {
      done(s.hung, undefined);
      return;
    }
    if (attempt >= s.config.max + 1) {
      done(new PoolConnectionError(s.database, s.name, s.config.address, attempt, 'every pooled connection was stale'), undefined);
      return;
    }
    if (performance.now() >= deadline) {
      done(s.timeoutError(t0, undefined), undefined);
      return;
    }
    this.acquire(t0, deadline, attempt + 1, done, quiet, mayOpen);
  }

  /** `now`: `Date.now()`, read once by the caller. */
  #handOut(conn: PooledConnection, now: number, t0: number, done: Done, quiet: boolean): void {
    const s = this.#s;
    conn.acquiredAt = now;
    conn.uses++;
    if (s.releaser.resetAlways && !quiet) conn.dirty = true;
    if (s.factory.exitOnIdle) (conn.client as unknown as { ref(): void }).ref();
    if (!s.breaker.clean) s.breaker.success();
    if (!quiet) {
      s.counters.acquired++;
      const waited = performance.now() - t0;
      s.acquireTime.record(waited);
      if (s.host.emitting) s.emit({ type: 'acquire', waitMs: waited });
      if (s.facade.heard) s.facade.emit('acquire', sharedHandle(conn));
    }
    done(undefined, conn);
  }
}
