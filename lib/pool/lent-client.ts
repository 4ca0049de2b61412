import type { PoolClient, QueryResult } from 'pg';
import { breaksConnection } from '../errors/failure-class.js';
import { ClientReleasedError } from '../pool.exceptions.js';
import { contextQuery } from '../session/context-client.js';
import type { CompiledSessionContext } from '../session/session-context.js';
import type { PooledConnection } from './pooled-connection.js';
import { sendThroughCache, type StatementSite } from './statement-cache.js';
import { sendAsync } from './statement-deadline.js';

/** What a lent handle needs from its pool. */
export interface LendingPool extends StatementSite {
  /** Gives the connection back (after `release(err)`; pg-pool's rule already marked it when `err` discards it). */
  giveBackLent(conn: PooledConnection, err: unknown): void;
}

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

const checkouts = new WeakMap<object, Checkout>();

/** The checkout behind a handle this library lent (given back or not); `undefined` for a foreign object. */
export function checkoutOf(handle: object): Checkout | undefined {
  return checkouts.get(handle);
}

/** `Checkout.ownError` for the checkout behind `handle` (`err` as it is for a foreign object). */
export function ownError(handle: object, err: unknown): unknown {
  const lease = checkouts.get(handle);
  return lease === undefined ? err : lease.ownError(err);
}

/** The physical connection behind a handle, or `undefined` once it was given back (or for a foreign object). */
export function leasedConnection(handle: object): PooledConnection | undefined {
  const lease = checkouts.get(handle);
  return lease === undefined || lease.returned ? undefined : lease.conn;
}

/** True for a handle of this library that was already given back. */
export function wasReturned(handle: object): boolean {
  return checkouts.get(handle)?.returned === true;
}

/** Marks the handle given back; `undefined` when it already was (or is not a handle). */
export function endLease(handle: object): PooledConnection | undefined {
  const lease = checkouts.get(handle);
  if (lease === undefined || lease.returned) return undefined;
  lease.returned = true;
  return lease.conn;
}

/** Sets (or, with `undefined`, clears) the gate of a lent handle. */
export function setGate(handle: object, gate: LendGate | undefined): void {
  const lease = checkouts.get(handle);
  if (lease !== undefined) lease.gate = gate;
}

type AnyFn = (...args: unknown[]) => unknown;

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

/**
 * Sends a caller's statement (through the prepared-statement cache), keeping the connection's
 * statement bookkeeping right when pg rejects the arguments before sending (it throws
 * synchronously, e.g. for `null`): nothing was sent, the connection is not busy, and the error is
 * thrown to the caller as pg throws it.
 */
function sendOrThrow(conn: PooledConnection, site: StatementSite, text: unknown, values: unknown, cb: (err: Error | null | undefined, res: QueryResult | undefined) => void): undefined {
  conn.began();
  try {
    sendThroughCache(conn.client, conn.statements, site, text, values, cb);
  } catch (err) {
    conn.finished(undefined);
    throw err;
  }
  return undefined;
}

/** Fails a call refused before anything was sent, in the form the caller used (callback or promise). */
function refuseCall(err: Error, args: unknown[]): unknown {
  const cb = args[args.length - 1];
  if (typeof cb !== 'function') return Promise.reject(err);
  queueMicrotask(() => (cb as AnyFn)(err));
  return undefined;
}

/**
 * The one handle lent for a checkout (HikariCP's `ProxyConnection`): a `pg.PoolClient` over the
 * physical client whose statements are tracked (busy time for the statement deadline, failures
 * as the connection's own, remembered by its `Checkout`). `release()` gives it back once; a
 * second call throws as pg-pool's does. Every other call after that throws `ClientReleasedError`,
 * so work cannot reach a connection that another caller has since borrowed. `end()` through the
 * handle marks the connection broken at once: released afterwards, it is closed, never pooled
 * again. A gate (a transaction's) is asked before each statement.
 */
export function lend(conn: PooledConnection, pool: LendingPool, context?: { readonly ctx: CompiledSessionContext; readonly begin: string }): PoolClient {
  const lease = new Checkout(conn);
  const client = conn.client;
  const refuse = (what: string) => new ClientReleasedError(pool.database, pool.name, what);
  const release = (err?: Error | boolean) => {
    if (lease.gate !== undefined) return;
    if (lease.returned) throw new Error(RELEASED_TWICE);
    lease.returned = true;
    discardIfAsked(conn, err);
    pool.giveBackLent(conn, err === true ? undefined : err);
  };
  const end = (...args: unknown[]) => {
    if (lease.returned) throw refuse('end()');
    conn.markBroken(new Error('The client was ended with client.end() while it was checked out.'));
    return (client.end as AnyFn).apply(client, args);
  };
  const query = (...args: unknown[]) => {
    const gate = lease.gate;
    if (gate !== undefined) {
      const refused = gate.refusal();
      if (refused !== undefined) return refuseCall(refused, args);
    }
    if (lease.returned) return refuseCall(refuse('query()'), args);
    const first = args[0] as { submit?: unknown } | undefined;
    conn.note(first);
    if (first !== null && typeof first === 'object' && typeof first.submit === 'function') return (client.query as AnyFn).apply(client, args);
    const cb = typeof args[args.length - 1] === 'function' ? (args[args.length - 1] as AnyFn) : undefined;
    const values = cb === undefined || args.length > 2 ? args[1] : undefined;
    if (cb !== undefined) {
      return sendOrThrow(conn, pool, args[0], values, (err, res) => {
        const reported = conn.finished(err);
        if (reported !== undefined) lease.produced(reported);
        cb(reported, res);
      });
    }
    let settle!: (err: Error | null | undefined, res: QueryResult | undefined) => void;
    const result = new Promise((resolve, reject) => {
      settle = (err, res) => {
        const reported = conn.finished(err);
        if (reported !== undefined) {
          lease.produced(reported);
          reject(reported);
        } else resolve(res);
      };
    });
    // Outside the promise: pg's own argument errors (a null query) are thrown to the caller, as pg does.
    sendOrThrow(conn, pool, args[0], values, settle);
    return result;
  };
  const lentQuery =
    context === undefined
      ? query
      : contextQuery(
          {
            live: () => !lease.returned,
            transactionStatus: () => conn.client.getTransactionStatus?.() ?? null,
            send: (text, values) => sendAsync(conn, text, values),
          },
          context.ctx,
          context.begin,
          query,
        );
  const handle = new Proxy(client, {
    get(target, prop) {
      if (prop === 'release') return release;
      if (prop === 'query') return lentQuery;
      if (prop === 'end') return end;
      if (prop === 'then') return undefined;
      const value = Reflect.get(target, prop, target) as unknown;
      if (typeof value !== 'function') return value;
      if (lease.returned) {
        return () => {
          throw refuse(`${String(prop)}()`);
        };
      }
      return (...args: unknown[]) => (value as AnyFn).apply(target, args);
    },
    set(target, prop, value) {
      if (lease.returned) throw refuse(`setting ${String(prop)}`);
      return Reflect.set(target, prop, value, target);
    },
  }) as unknown as PoolClient;
  checkouts.set(handle, lease);
  return handle;
}

interface Shared {
  /** The checkout currently (or last) lent through the shared handle. */
  current: PoolClient | undefined;
  readonly handle: PoolClient;
}

const shared = new WeakMap<PooledConnection, Shared>();

/**
 * The one client object of a physical connection, as `pg.Pool` hands out (libraries key
 * per-connection state on it: Kysely's `onCreateConnection`, prepared-statement maps, LISTEN
 * bookkeeping). Every call goes to the checkout it was last lent with (`checkout`, a `lend()`
 * handle): while that checkout is out the calls run; once it was released they are refused
 * (`ClientReleasedError`, `release()` twice throws), until the pool lends the same connection
 * again through this object.
 */
export function sharedHandle(conn: PooledConnection, checkout?: PoolClient): PoolClient {
  let entry = shared.get(conn);
  if (entry === undefined) {
    const state = { current: checkout } as { current: PoolClient | undefined };
    const handle = new Proxy(conn.client, {
      get(target, prop) {
        if (prop === 'then') return undefined;
        const to = state.current;
        if (to === undefined) return Reflect.get(target, prop, target) as unknown;
        return Reflect.get(to, prop) as unknown;
      },
      set(target, prop, value) {
        const to = state.current;
        return to === undefined ? Reflect.set(target, prop, value, target) : Reflect.set(to, prop, value);
      },
    }) as unknown as PoolClient;
    entry = Object.assign(state, { handle });
    shared.set(conn, entry);
  } else if (checkout !== undefined) entry.current = checkout;
  return entry.handle;
}
