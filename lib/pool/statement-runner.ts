import type { PoolClient, QueryConfig, QueryResult, QueryResultRow } from 'pg';
import { isSessionTerminated } from '../errors/sql-state.js';
import { ClientReleasedError, NamedStatementUnsupportedError, PoolStatementTimeoutError } from '../pool.exceptions.js';
import type { CompiledSessionContext } from '../session/session-context.js';
import { statementText } from '../session/statement-kind.js';
import { rejectAtCaller } from './acquirer.js';
import { endLease, leasedConnection, wasReturned } from './checkout.js';
import { lend, type LendingPool } from './lent-client.js';
import type { PoolState } from './pool-state.js';
import type { PooledConnection } from './pooled-connection.js';
import { lendShared, sharedHandle } from './shared-handle.js';
import { send, sendAsync, sendWithin, type Meter } from './statement-deadline.js';

/**
 * A single statement (or BEGIN) that fails with 57P01 this soon after it was sent is run once more
 * on a new connection: the server terminated the session before running it, or while running it
 * (rolled back, never committed). Longer-running statements are not retried, so a query an
 * operator killed on purpose is not started again.
 */
const STALE_RETRY_WINDOW_MS = 1000;

export type QueryInput = string | QueryConfig;

/** One statement (no `;` before the end), so running it again cannot repeat a committed part. */
export function isSingleStatement(text: QueryInput): boolean {
  const sql = statementText(text);
  return !sql.includes(';') || !sql.trimEnd().replace(/;+$/, '').includes(';');
}

/**
 * Runs statements on a node's connections: a caller's statement (`query`, with its checkout and
 * release, and one retry on a new connection when the server had terminated the pooled session),
 * a statement on a client already lent (`run`), a transaction's start (`begin`), a lent client
 * (`acquire`), and the library's own statements (`systemQuery`). Every statement is counted and
 * timed in one place (`sent` / `answered`, through `send`); session contexts of the routing scope
 * apply to callers' statements and clients.
 */
export class StatementRunner implements LendingPool, Meter {
  readonly #s: PoolState;
  readonly database: string;
  readonly name: string;
  /** Behind PgBouncer, session settings do not survive: a transaction sets its statement deadline itself. */
  readonly #transactionSettings: string;
  /** PgBouncer in transaction mode without protocol-level prepared statements: `QueryConfig.name` is refused. */
  readonly #refusesNames: boolean;
  readonly #loggedContexts = new WeakSet<CompiledSessionContext>();

  constructor(s: PoolState) {
    this.#s = s;
    const config = s.config;
    this.database = config.database;
    this.name = config.name;
    this.#transactionSettings = config.pgbouncer && config.statementTimeoutMs > 0 ? `; SET LOCAL statement_timeout = ${config.statementTimeoutMs}` : '';
    this.#refusesNames = config.pgbouncer && !config.preparedStatements.pgbouncerProtocol;
  }

  /** One statement on a connection of this pool, which is always given back. */
  query<R extends QueryResultRow>(text: QueryInput, values?: unknown[]): Promise<QueryResult<R>> {
    if (this.#refusesNames && typeof text === 'object' && text !== null && text.name) return Promise.reject(this.#namedStatement(text));
    let ctx: CompiledSessionContext | undefined;
    try {
      ctx = this.#sessionContext();
    } catch (err) {
      return Promise.reject(err);
    }
    if (ctx !== undefined) return this.#queryInContext<R>(text, values);
    return new Promise<QueryResult<R>>((resolve) => {
      this.#s.acquirer.borrow((err, conn) => {
        if (err !== undefined) rejectAtCaller(resolve, err);
        else this.#execute<R>(conn!, text, values, true, resolve);
      });
    });
  }

  /** A statement on a client already lent by this pool; gives it back after the statement when `release` is set. */
  run<R extends QueryResultRow>(client: PoolClient, text: QueryInput, values: unknown[] | undefined, release: boolean): Promise<QueryResult<R>> {
    const conn = leasedConnection(client);
    if (conn === undefined) {
      return Promise.reject(wasReturned(client) ? new ClientReleasedError(this.database, this.name, 'query()') : new TypeError('Cannot run a statement on a client this pool did not lend.'));
    }
    if (this.#refusesNames && typeof text === 'object' && text !== null && text.name) {
      const err = this.#namedStatement(text);
      if (release) this.release(client, undefined);
      return Promise.reject(err);
    }
    if (release) {
      endLease(client);
      return new Promise<QueryResult<R>>((resolve) => this.#execute<R>(conn, text, values, false, resolve));
    }
    if (conn.broken && conn.brokenBy !== undefined) {
      // The server ended this connection between two statements of a transaction: report why
      // (e.g. 57P01) rather than the driver's "not queryable".
      this.#s.counters.queries++;
      this.#s.counters.queryErrors++;
      return Promise.reject(conn.brokenBy);
    }
    conn.note(text);
    return new Promise<QueryResult<R>>((resolve, reject) => {
      send<R>(conn, text, values, (err, res) => (err !== undefined ? reject(err) : resolve(res!)), this, this);
    });
  }

  /**
   * The library's own statement, on one connection, bounded as a whole by `timeoutMs`; no
   * acquire/release events; goes through an open breaker (it is how the library finds out a node
   * is back). On timeout the connection is destroyed and the statement fails with `PoolStatementTimeoutError`.
   */
  systemQuery<R extends QueryResultRow>(text: string, values: unknown[] | undefined, timeoutMs: number): Promise<QueryResult<R>> {
    const s = this.#s;
    const t0 = performance.now();
    s.counters.systemQueries++;
    return new Promise<QueryResult<R>>((resolve, reject) => {
      s.acquirer.acquire(
        t0,
        t0 + Math.min(timeoutMs, s.config.acquireTimeoutMs),
        0,
        (err, conn) => {
          if (err !== undefined) {
            reject(err);
            return;
          }
          const left = Math.max(1, Math.ceil(timeoutMs - (performance.now() - t0)));
          sendWithin<R>(conn!, text, values, left, s.where, this).then(
            (res) => {
              s.releaser.release(conn!, undefined, true);
              resolve(res);
            },
            (failure: Error) => {
              if (failure instanceof PoolStatementTimeoutError) s.timedOut(failure);
              s.releaser.release(conn!, failure, true);
              reject(failure);
            },
          );
        },
        true,
      );
    });
  }

  /** A client with a transaction opened by `begin` (plus the PgBouncer statement deadline, and the scope's session context). */
  begin(begin: string): Promise<PoolClient> {
    return this.#open(begin, true);
  }

  /** `begin`; `watched`: the transaction is the caller's (leak detection watches it), not one of the library's own statements. */
  #open(begin: string, watched: boolean): Promise<PoolClient> {
    const sql = begin + this.#transactionSettings;
    let ctx: CompiledSessionContext | undefined;
    try {
      ctx = this.#sessionContext();
    } catch (err) {
      return Promise.reject(err);
    }
    const opened = this.#s.acquirer.borrowed(watched).then((conn) => this.#begin(conn, sql, watched, true));
    return ctx === undefined ? opened : opened.then((client) => this.#applyContext(client, ctx));
  }

  /** A lent client; in a scope with a session context, each of its statements runs in a transaction with the context. */
  acquire(): Promise<PoolClient> {
    return this.#lend(false);
  }

  /**
   * `acquire()` lent through the connection's shared handle (`pg.Pool.connect()`): without a
   * session context, the handle serves the checkout itself, so nothing is built per checkout but
   * the checkout and its `release`.
   */
  acquireShared(): Promise<PoolClient> {
    return this.#lend(true);
  }

  #lend(shared: boolean): Promise<PoolClient> {
    let ctx: CompiledSessionContext | undefined;
    try {
      ctx = this.#sessionContext();
    } catch (err) {
      return Promise.reject(err);
    }
    const acquirer = this.#s.acquirer;
    if (ctx === undefined) {
      return acquirer.borrowedAs((conn) => (shared ? lendShared(conn, this) : lend(conn, this)), true);
    }
    const context = { ctx, begin: `BEGIN${this.#transactionSettings}` };
    const lent = acquirer.borrowed(true).then((conn) => {
      this.#contextApplied(ctx);
      return lend(conn, this, context);
    });
    return shared ? lent.then((client) => sharedHandle(leasedConnection(client)!, client)) : lent;
  }

  /** Gives a lent client back (once; a client already given back is left alone). */
  release(client: PoolClient, err: unknown): void {
    const conn = endLease(client);
    if (conn !== undefined) this.#s.releaser.release(conn, err, false);
  }

  /** `LendingPool`: `release(err?)` called on a lent handle. */
  giveBackLent(conn: PooledConnection, err: unknown): void {
    this.#s.releaser.release(conn, err, false);
  }

  /** `Meter`: a statement was sent. */
  sent(): void {
    this.#s.counters.queries++;
  }

  /** `Meter`: a statement answered after it was sent at `t0`: timed, counted when it failed or was slow. */
  answered(t0: number, text: unknown, err: Error | undefined): number {
    const s = this.#s;
    const now = performance.now();
    s.lastAnswerAt = now;
    const ms = now - t0;
    s.queryTime.record(ms);
    if (err !== undefined) s.counters.queryErrors++;
    const slow = s.host.slowQueryMs;
    if (slow > 0 && ms >= slow) {
      s.counters.slowQueries++;
      if (s.host.emitting) {
        const sql = statementText(text as QueryInput);
        s.emit({ type: 'slow-query', durationMs: ms, text: sql.length > 500 ? `${sql.slice(0, 500)}…` : sql });
      }
    }
    return ms;
  }

  #execute<R extends QueryResultRow>(conn: PooledConnection, text: QueryInput, values: unknown[] | undefined, retry: boolean, resolve: (value: QueryResult<R> | PromiseLike<QueryResult<R>>) => void): void {
    conn.note(text);
    send<R>(
      conn,
      text,
      values,
      (err, res, ms) => {
        const releaser = this.#s.releaser;
        if (err === undefined) {
          releaser.release(conn, undefined, false);
          resolve(res!);
          return;
        }
        releaser.release(conn, err, false);
        if (retry && ms < STALE_RETRY_WINDOW_MS && isSessionTerminated(err) && isSingleStatement(text)) {
          this.#s.counters.staleRetries++;
          this.#s.acquirer.borrowed().then(
            (fresh) => this.#execute<R>(fresh, text, values, false, resolve),
            (failure: unknown) => rejectAtCaller(resolve, failure),
          );
          return;
        }
        rejectAtCaller(resolve, err);
      },
      this,
      this,
    );
  }

  #begin(conn: PooledConnection, sql: string, watched: boolean, retry: boolean): Promise<PoolClient> {
    return new Promise<PoolClient>((resolve, reject) => {
      send(
        conn,
        sql,
        undefined,
        (err, _res, ms) => {
          if (err === undefined) {
            resolve(lend(conn, this));
            return;
          }
          this.#s.releaser.release(conn, err, false);
          if (retry && ms < STALE_RETRY_WINDOW_MS && isSessionTerminated(err)) {
            this.#s.counters.staleRetries++;
            this.#s.acquirer
              .borrowed(watched)
              .then((fresh) => this.#begin(fresh, sql, watched, false))
              .then(resolve, reject);
            return;
          }
          reject(err);
        },
        undefined,
        this,
      );
    });
  }

  /** The session context of the current scope for this database (`undefined`: none, or empty). */
  #sessionContext(): CompiledSessionContext | undefined {
    const ctx = this.#s.host.sessionContexts?.()?.get(this.database);
    return ctx === undefined || ctx.sql === '' ? undefined : ctx;
  }

  /** Debug log: once per context (a request's, a `withSession` call's) and node. */
  #contextApplied(ctx: CompiledSessionContext): void {
    const s = this.#s;
    if (this.#loggedContexts.has(ctx) || s.host.debugging !== true) return;
    this.#loggedContexts.add(ctx);
    s.host.contextApplied?.(s.node, ctx);
  }

  /** Applies the context in the transaction just opened on `client`; gives the client back if that fails. */
  #applyContext(client: PoolClient, ctx: CompiledSessionContext): Promise<PoolClient> {
    this.#contextApplied(ctx);
    return sendAsync(leasedConnection(client)!, ctx.sql, ctx.values).then(
      () => client,
      (err: unknown) => {
        this.release(client, err);
        throw err;
      },
    );
  }

  /** One statement in a transaction with the scope's session context: BEGIN, the context, the statement, COMMIT. */
  async #queryInContext<R extends QueryResultRow>(text: QueryInput, values: unknown[] | undefined): Promise<QueryResult<R>> {
    const client = await this.#open('BEGIN', false);
    let failure: unknown;
    try {
      const res = await this.run<R>(client, text, values, false);
      await this.run(client, 'COMMIT', undefined, false);
      return res;
    } catch (err) {
      failure = err;
      throw err;
    } finally {
      this.release(client, failure);
    }
  }

  #namedStatement(text: QueryConfig): NamedStatementUnsupportedError {
    return new NamedStatementUnsupportedError(this.database, String(text.name));
  }
}
