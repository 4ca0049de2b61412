import type { PoolClient, QueryResult } from 'pg';
import { ClientReleasedError } from '../pool.exceptions.js';
import { contextQuery } from '../session/context-client.js';
import type { CompiledSessionContext } from '../session/session-context.js';
import type { PooledConnection } from './pooled-connection.js';
import { sendThroughCache, type StatementSite } from './statement-cache.js';
import { sendAsync } from './statement-deadline.js';

/** What a lent handle needs from its pool. */
export interface LendingPool {
  readonly database: string;
  readonly name: string;
  /** Gives the connection back; `destroy` closes it instead of pooling it. */
  giveBackLent(conn: PooledConnection, err: unknown, destroy: boolean): void;
}

interface Lease {
  conn: PooledConnection;
  returned: boolean;
}

const leases = new WeakMap<object, Lease>();

/** The physical connection behind a handle, or `undefined` once it was given back (or for a foreign object). */
export function leasedConnection(handle: object): PooledConnection | undefined {
  const lease = leases.get(handle);
  return lease === undefined || lease.returned ? undefined : lease.conn;
}

/** True for a handle of this library that was already given back. */
export function wasReturned(handle: object): boolean {
  return leases.get(handle)?.returned === true;
}

/** Marks the handle given back; false when it already was (or is not a handle). */
export function endLease(handle: object): PooledConnection | undefined {
  const lease = leases.get(handle);
  if (lease === undefined || lease.returned) return undefined;
  lease.returned = true;
  return lease.conn;
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

/**
 * The handle lent to a borrower (HikariCP's `ProxyConnection`): a `pg.PoolClient` over the
 * physical client whose statements are tracked (busy time for the statement deadline, failures
 * as the connection's own). `release()` gives it back once; a second call throws as pg-pool's
 * does. Every other call after that throws `ClientReleasedError`, so work cannot reach a
 * connection that another caller has since borrowed. `end()` through the handle marks the
 * connection broken at once: released afterwards, it is closed, never pooled again.
 */
export function lend(conn: PooledConnection, pool: LendingPool, context?: { readonly ctx: CompiledSessionContext; readonly begin: string }): PoolClient {
  const lease: Lease = { conn, returned: false };
  const client = conn.client;
  const refuse = (what: string) => new ClientReleasedError(pool.database, pool.name, what);
  const release = (err?: Error | boolean) => {
    if (lease.returned) throw new Error(RELEASED_TWICE);
    lease.returned = true;
    pool.giveBackLent(conn, err === true ? undefined : err, discards(err));
  };
  const end = (...args: unknown[]) => {
    if (lease.returned) throw refuse('end()');
    conn.markBroken(new Error('The client was ended with client.end() while it was checked out.'));
    return (client.end as AnyFn).apply(client, args);
  };
  const query = (...args: unknown[]) => {
    if (lease.returned) {
      const err = refuse('query()');
      const cb = args[args.length - 1];
      if (typeof cb !== 'function') return Promise.reject(err);
      queueMicrotask(() => (cb as AnyFn)(err));
      return undefined;
    }
    const first = args[0] as { submit?: unknown } | undefined;
    conn.note(first);
    if (first !== null && typeof first === 'object' && typeof first.submit === 'function') return (client.query as AnyFn).apply(client, args);
    const cb = typeof args[args.length - 1] === 'function' ? (args[args.length - 1] as AnyFn) : undefined;
    const values = cb === undefined || args.length > 2 ? args[1] : undefined;
    if (cb !== undefined) {
      return sendOrThrow(conn, pool, args[0], values, (err, res) => cb(conn.finished(err), res));
    }
    let settle!: (err: Error | null | undefined, res: QueryResult | undefined) => void;
    const result = new Promise((resolve, reject) => {
      settle = (err, res) => {
        const reported = conn.finished(err);
        if (reported !== undefined) reject(reported);
        else resolve(res);
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
  leases.set(handle, lease);
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
