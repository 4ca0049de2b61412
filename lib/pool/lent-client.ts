import type { Client, PoolClient, QueryResult } from 'pg';
import { ClientReleasedError } from '../pool.exceptions.js';
import { contextQuery } from '../session/context-client.js';
import type { CompiledSessionContext } from '../session/session-context.js';
import { Checkout, discardIfAsked, LEASED, RELEASED_TWICE, type Leased } from './checkout.js';
import type { PooledConnection } from './pooled-connection.js';
import { sendThroughCache, type StatementSite } from './statement-cache.js';
import { sendAsync } from './statement-deadline.js';

/** What a lent handle needs from its pool. */
export interface LendingPool extends StatementSite {
  /** Gives the connection back (after `release(err)`; pg-pool's rule already marked it when `err` discards it). */
  giveBackLent(conn: PooledConnection, err: unknown): void;
}

type AnyFn = (...args: unknown[]) => unknown;

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
export type Release = (err?: Error | boolean) => void;

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
export class Lending implements Leased {
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
