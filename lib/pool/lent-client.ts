import type { Client, PoolClient, QueryResult } from 'pg';
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

/** What a handle serves: its checkout (a `lend()` handle keeps one; a connection's shared handle moves on to the next). */
interface Leased {
  readonly lease: Checkout | undefined;
}

/**
 * The key under which a handle of this library shows what it serves: its proxy answers it (no
 * table from handles to checkouts to keep up, or for the collector to trace); any other object
 * has nothing under this module's own symbol.
 */
const LEASED = Symbol('nestjs-pg-pools.leased');

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

/** A checkout's `release(err?)`. */
type Release = (err?: Error | boolean) => void;

/** The session-context form of a lent client's `query` (statements wrapped in a transaction with the context). */
interface LendContext {
  readonly ctx: CompiledSessionContext;
  readonly begin: string;
}

/**
 * What a handle lends: a connection of a pool, the checkout it serves now, and the `query` and
 * `end` it shows in place of the client's (they read the checkout when called). A `lend()` handle
 * has one of its own; a connection's shared handle keeps one for the connection's life and moves
 * it on to each new checkout, so lending it again allocates only the checkout and its `release`.
 */
class Lending implements Leased {
  lease: Checkout;
  readonly query: AnyFn;
  readonly end: AnyFn;

  constructor(
    readonly conn: PooledConnection,
    readonly pool: LendingPool,
    context?: LendContext,
  ) {
    this.lease = new Checkout(conn);
    this.end = (...args: unknown[]) => {
      if (this.lease.returned) throw this.refused('end()');
      conn.markBroken(new Error('The client was ended with client.end() while it was checked out.'));
      return (conn.client.end as AnyFn).apply(conn.client, args);
    };
    const query = (...args: unknown[]) => lentQuery(this, args);
    this.query =
      context === undefined
        ? query
        : contextQuery(
            {
              live: () => !this.lease.returned,
              transactionStatus: () => conn.client.getTransactionStatus?.() ?? null,
              send: (text, values) => sendAsync(conn, text, values),
            },
            context.ctx,
            context.begin,
            query,
          );
  }

  refused(what: string): ClientReleasedError {
    return new ClientReleasedError(this.pool.database, this.pool.name, what);
  }

  /** The `release(err?)` of the current checkout: one per checkout, as pg-pool's (a stale one throws, never releases a later checkout). */
  releaser(): Release {
    const lease = this.lease;
    const { conn, pool } = this;
    return (err?: Error | boolean) => {
      if (lease.gate !== undefined) return;
      if (lease.returned) throw new Error(RELEASED_TWICE);
      lease.returned = true;
      discardIfAsked(conn, err);
      pool.giveBackLent(conn, err === true ? undefined : err);
    };
  }

  /** A property of the client as the handle shows it: its own `query`/`release`/`end`; methods refused once given back. */
  property(target: Client, prop: string | symbol, release: Release): unknown {
    if (prop === 'query') return this.query;
    if (prop === 'release') return release;
    if (prop === 'end') return this.end;
    if (prop === 'then') return undefined;
    const value = Reflect.get(target, prop, target) as unknown;
    if (typeof value !== 'function') return value;
    if (this.lease.returned) {
      return () => {
        throw this.refused(`${String(prop)}()`);
      };
    }
    return (...args: unknown[]) => (value as AnyFn).apply(target, args);
  }

  assign(target: Client, prop: string | symbol, value: unknown): boolean {
    if (this.lease.returned) throw this.refused(`setting ${String(prop)}`);
    return Reflect.set(target, prop, value, target);
  }
}

/** A lent client's `query(...)`: asks the gate, refuses once given back, tracks the statement on the connection. */
function lentQuery(l: Lending, args: unknown[]): unknown {
  const lease = l.lease;
  const gate = lease.gate;
  if (gate !== undefined) {
    const refused = gate.refusal();
    if (refused !== undefined) return refuseCall(refused, args);
  }
  if (lease.returned) return refuseCall(l.refused('query()'), args);
  const conn = l.conn;
  const client = conn.client;
  const first = args[0] as { submit?: unknown } | undefined;
  conn.note(first);
  if (first !== null && typeof first === 'object' && typeof first.submit === 'function') return (client.query as AnyFn).apply(client, args);
  const last = args[args.length - 1];
  const cb = typeof last === 'function' ? (last as AnyFn) : undefined;
  const values = cb === undefined || args.length > 2 ? args[1] : undefined;
  if (cb !== undefined) {
    return sendOrThrow(conn, l.pool, args[0], values, (err, res) => {
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
  sendOrThrow(conn, l.pool, args[0], values, settle);
  return result;
}

/** The proxy handler of a `lend()` handle: one lending, one release. */
class LentView implements ProxyHandler<Client> {
  constructor(
    readonly lending: Lending,
    readonly release: Release,
  ) {}

  get(target: Client, prop: string | symbol): unknown {
    if (prop === LEASED) return this.lending;
    return this.lending.property(target, prop, this.release);
  }

  set(target: Client, prop: string | symbol, value: unknown): boolean {
    return this.lending.assign(target, prop, value);
  }
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
export function lend(conn: PooledConnection, pool: LendingPool, context?: LendContext): PoolClient {
  const lending = new Lending(conn, pool, context);
  return new Proxy(conn.client, new LentView(lending, lending.releaser())) as unknown as PoolClient;
}

/**
 * The proxy handler of a connection's shared handle (one per physical connection, for its life).
 * Lent directly (`lendShared`), it serves that checkout as a `lend()` handle would; lent through a
 * `lend()` handle (`via`, a checkout with a session context), it forwards every call to it; never
 * lent, it shows the client as it is (an `onConnect` hook, a `connect` event).
 */
class SharedView implements ProxyHandler<Client>, Leased {
  readonly handle: PoolClient;
  lending: Lending | undefined = undefined;
  release: Release | undefined = undefined;
  via: PoolClient | undefined = undefined;

  constructor(client: Client) {
    this.handle = new Proxy(client, this) as unknown as PoolClient;
  }

  get lease(): Checkout | undefined {
    return this.via !== undefined ? checkoutOf(this.via) : this.lending?.lease;
  }

  get(target: Client, prop: string | symbol): unknown {
    if (prop === LEASED) return this;
    if (prop === 'then') return undefined;
    const via = this.via;
    if (via !== undefined) return Reflect.get(via, prop) as unknown;
    const lending = this.lending;
    return lending === undefined ? (Reflect.get(target, prop, target) as unknown) : lending.property(target, prop, this.release!);
  }

  set(target: Client, prop: string | symbol, value: unknown): boolean {
    const via = this.via;
    if (via !== undefined) return Reflect.set(via, prop, value);
    const lending = this.lending;
    return lending === undefined ? Reflect.set(target, prop, value, target) : lending.assign(target, prop, value);
  }
}

const shared = new WeakMap<PooledConnection, SharedView>();

function sharedView(conn: PooledConnection): SharedView {
  let view = shared.get(conn);
  if (view === undefined) {
    view = new SharedView(conn.client);
    shared.set(conn, view);
  }
  return view;
}

/**
 * The one client object of a physical connection, as `pg.Pool` hands out (libraries key
 * per-connection state on it: Kysely's `onCreateConnection`, prepared-statement maps, LISTEN
 * bookkeeping). Every call goes to the checkout it was last lent for: while that checkout is out
 * the calls run; once it was released they are refused (`ClientReleasedError`, `release()` twice
 * throws), until the pool lends the same connection again through this object. `checkout`: a
 * `lend()` handle the connection was just lent through, which the calls then go to.
 */
export function sharedHandle(conn: PooledConnection, checkout?: PoolClient): PoolClient {
  const view = sharedView(conn);
  if (checkout !== undefined) view.via = checkout;
  return view.handle;
}

/** Lends `conn` for a new checkout through its shared handle (`pg.Pool.connect()`): no handle of its own to build. */
export function lendShared(conn: PooledConnection, pool: LendingPool): PoolClient {
  const view = sharedView(conn);
  let lending = view.lending;
  if (lending === undefined) view.lending = lending = new Lending(conn, pool);
  else lending.lease = new Checkout(conn);
  view.release = lending.releaser();
  view.via = undefined;
  return view.handle;
}
