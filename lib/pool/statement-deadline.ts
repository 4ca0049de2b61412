import type { QueryResult, QueryResultRow } from 'pg';
import { PoolStatementTimeoutError } from '../pool.exceptions.js';
import type { PooledConnection } from './pooled-connection.js';
import { sendThroughCache, type StatementSite } from './statement-cache.js';

/** How long a CancelRequest for a statement past its deadline may take (it needs no login, only a socket). */
export const CANCEL_TIMEOUT_MS = 1000;

export type QueryCallback<R extends QueryResultRow> = (err: Error | undefined, res: QueryResult<R> | undefined) => void;

/**
 * Sends one statement on `conn` and reports through `cb`, marking the connection busy while it
 * runs (the housekeeper enforces the pool's statement deadline on busy connections) and
 * remembering a failure as the connection's own. An error replaced by the deadline that
 * destroyed the connection is reported as that deadline. A caller's statement (`site` given) goes
 * through the connection's prepared-statement cache; the library's own statements never do.
 */
export function send<R extends QueryResultRow>(conn: PooledConnection, text: unknown, values: unknown, cb: QueryCallback<R>, site?: StatementSite): void {
  conn.began();
  try {
    sendThroughCache(conn.client, site === undefined ? undefined : conn.statements, site, text, values, (err, res) => {
      const reported = conn.finished(err);
      if (reported !== undefined) cb(reported, undefined);
      else cb(undefined, res as QueryResult<R>);
    });
  } catch (err) {
    // pg rejected the arguments before sending anything (e.g. a null query): the connection is fine.
    conn.finished(undefined);
    cb(err as Error, undefined);
  }
}

/** `send` as a promise. */
export function sendAsync<R extends QueryResultRow>(conn: PooledConnection, text: unknown, values: unknown): Promise<QueryResult<R>> {
  return new Promise((resolve, reject) => send<R>(conn, text, values, (err, res) => (err ? reject(err) : resolve(res!))));
}

/**
 * `send` with its own deadline (validation, rollback, the library's own statements): when the
 * server has not answered within `timeoutMs`, the statement is cancelled on the server and the
 * connection destroyed — never pooled again — and it fails with `PoolStatementTimeoutError`.
 */
export function sendWithin<R extends QueryResultRow>(
  conn: PooledConnection,
  text: string,
  values: unknown[] | undefined,
  timeoutMs: number,
  describe: () => { database: string; node: string; address: string },
): Promise<QueryResult<R>> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      const where = describe();
      void conn.abandon(new PoolStatementTimeoutError(where.database, where.node, where.address, timeoutMs, text), CANCEL_TIMEOUT_MS);
    }, timeoutMs);
    timer.unref();
    send<R>(conn, text, values, (err, res) => {
      clearTimeout(timer);
      if (err) reject(err);
      else resolve(res!);
    });
  });
}
