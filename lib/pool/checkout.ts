import { breaksConnection } from '../errors/failure-class.js';
import type { PooledConnection } from './pooled-connection.js';

/**
 * What owns a lent handle for a while (a transaction): asked before each statement (`undefined`
 * to go ahead, or the error to fail with) and told of each error a statement produced. While a
 * gate is set, the handle's `release()` does nothing: its owner gives the connection back.
 */
export interface LendGate {
  refusal(): Error | undefined;
  produced(err: unknown): void;
}

/**
 * One checkout of a connection, behind the one handle lent for it (HikariCP's `ProxyConnection`
 * state): whether it was given back, the errors its statements produced, and the one judgement
 * of where an error came from (the failure classifier of errors/failure-class.ts, and this
 * connection's own record).
 */
export class Checkout {
  returned = false;
  gate: LendGate | undefined = undefined;
  #produced: WeakSet<object> | undefined = undefined;

  /** `conn` undefined: a client this library did not lend (a stand-in); only its statements' errors are known. */
  constructor(readonly conn: PooledConnection | undefined) {}

  /** Records an error a statement of this checkout produced (and tells the gate). */
  produced(err: unknown): void {
    if (err !== null && typeof err === 'object') (this.#produced ??= new WeakSet()).add(err);
    this.gate?.produced(err);
  }

  /** True once the connection failed (it emitted `error` or ended, a deadline or `end()` broke it): it is gone. */
  get failed(): boolean {
    return this.conn?.broken === true;
  }

  /** True when `err` came from this connection: a statement of this checkout failed with it, or the connection broke with it. */
  raised(err: unknown): boolean {
    return this.conn?.raised(err) === true || (err !== null && typeof err === 'object' && this.#produced?.has(err) === true);
  }

  /**
   * The error a borrower's failure gives the connection back with: `err` unless it is a
   * connection-class error that did not come from this connection (then `undefined`: a `fetch`
   * refused or a 57P01 from another database leaves this healthy connection pooled).
   */
  ownError(err: unknown): unknown {
    if (err === undefined || !breaksConnection(err)) return err;
    return this.raised(err) ? err : undefined;
  }

  /** `ownError`, and the connection's own failure when it broke (a transaction's: ROLLBACK could not be sent). */
  releaseError(err: unknown): unknown {
    if (err !== undefined && !breaksConnection(err)) return err;
    if (this.conn?.broken === true) return err ?? this.conn.brokenBy;
    return this.ownError(err);
  }
}

/** What a handle serves: its checkout (a `lend()` handle keeps one; a connection's shared handle moves on to the next). */
export interface Leased {
  readonly lease: Checkout | undefined;
}

/**
 * The key under which a handle of this library shows what it serves: its proxy answers it (no
 * table from handles to checkouts to keep up, or for the collector to trace); any other object
 * has nothing under this module's own symbol.
 */
export const LEASED = Symbol('nestjs-pg-pools.leased');

/** The checkout behind a handle this library lent (given back or not); `undefined` for a foreign object. */
export function checkoutOf(handle: object): Checkout | undefined {
  return (handle as { [LEASED]?: Leased })[LEASED]?.lease;
}

/** `Checkout.ownError` for the checkout behind `handle` (`err` as it is for a foreign object). */
export function ownError(handle: object, err: unknown): unknown {
  const lease = checkoutOf(handle);
  return lease === undefined ? err : lease.ownError(err);
}

/** The physical connection behind a handle, or `undefined` once it was given back (or for a foreign object). */
export function leasedConnection(handle: object): PooledConnection | undefined {
  const lease = checkoutOf(handle);
  return lease === undefined || lease.returned ? undefined : lease.conn;
}

/** True for a handle of this library that was already given back. */
export function wasReturned(handle: object): boolean {
  return checkoutOf(handle)?.returned === true;
}

/** Marks the handle given back; `undefined` when it already was (or is not a handle). */
export function endLease(handle: object): PooledConnection | undefined {
  const lease = checkoutOf(handle);
  if (lease === undefined || lease.returned) return undefined;
  lease.returned = true;
  return lease.conn;
}

/** Sets (or, with `undefined`, clears) the gate of a lent handle. */
export function setGate(handle: object, gate: LendGate | undefined): void {
  const lease = checkoutOf(handle);
  if (lease !== undefined) lease.gate = gate;
}

/** pg-pool's wording, which callers match: a handle's `release()` after it was given back. */
export const RELEASED_TWICE = 'Release called on client which has already been released to the pool.';

/**
 * pg-pool's `release(err)` rule, for every handle the module lends (`connect()` on a node pool,
 * `db.routedPool.connect()`, `withClient`): a truthy `err` (or `true`) discards the connection
 * instead of pooling it again; `release()`, `release(false)` and `release(null)` pool it.
 */
export function discards(err: unknown): boolean {
  return err !== undefined && err !== false && err !== null;
}

/** Applies pg-pool's `release(err)` rule to a connection: when `err` discards it, it is marked to be closed on release. */
export function discardIfAsked(conn: PooledConnection, err: unknown): void {
  if (!discards(err) || conn.broken) return;
  conn.markBroken(err !== null && typeof err === 'object' ? err : new Error('released with an error'));
  conn.removeReason = 'error';
}

/** `release(err)` given to a handle through something that holds it (`db.routedPool`'s client): the same rule as the handle's own. */
export function releasedWith(handle: object, err: unknown): void {
  const conn = leasedConnection(handle);
  if (conn !== undefined) discardIfAsked(conn, err);
}
