import type { PoolClient } from 'pg';
import { ClientReleasedError } from '../pool.exceptions.js';
import { contextQuery } from '../session/context-client.js';
import type { CompiledSessionContext } from '../session/session-context.js';
import type { PooledConnection } from './pooled-connection.js';
import { sendThroughCache } from './statement-cache.js';
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

/**
 * The handle lent to a borrower (HikariCP's `ProxyConnection`): a `pg.PoolClient` over the
 * physical client whose statements are tracked (busy time for the statement deadline, failures
 * as the connection's own). `release()` gives it back once; a second call is harmless. Every
 * other call after that throws `ClientReleasedError`, so work cannot reach a connection that
 * another caller has since borrowed.
 */
export function lend(conn: PooledConnection, pool: LendingPool, context?: { readonly ctx: CompiledSessionContext; readonly begin: string }): PoolClient {
  const lease: Lease = { conn, returned: false };
  const client = conn.client;
  const refuse = (what: string) => new ClientReleasedError(pool.database, pool.name, what);
  const release = (err?: Error | boolean) => {
    if (lease.returned) return;
    lease.returned = true;
    pool.giveBackLent(conn, err === true ? undefined : err, err !== undefined && err !== false && err !== null);
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
    conn.began();
    if (cb !== undefined) {
      sendThroughCache(client, conn.statements, pool, args[0], values, (err, res) => cb(conn.finished(err), res));
      return undefined;
    }
    return new Promise((resolve, reject) => {
      sendThroughCache(client, conn.statements, pool, args[0], values, (err, res) => {
        const reported = conn.finished(err);
        if (reported !== undefined) reject(reported);
        else resolve(res);
      });
    });
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
