import type { QueryResult, QueryResultRow } from 'pg';
import { PoolStatementTimeoutError } from '../pool.exceptions.js';
import type { PooledConnection } from './pooled-connection.js';
import { sendThroughCache, type StatementSite } from './statement-cache.js';

/** How long a CancelRequest for a statement past its deadline may take (it needs no login, only a socket). */
export const CANCEL_TIMEOUT_MS = 1000;

export type QueryCallback<R extends QueryResultRow> = (err: Error | undefined, res: QueryResult<R> | undefined, ms: number) => void;

/** Counts the statements a pool runs (its statement runner): told when one is sent and when it answered. */
export interface Meter {
  sent(): void;
  /** Returns how long the statement took (ms). */
  answered(t0: number, text: unknown, err: Error | undefined): number;
}

/**
 * Sends one statement on `conn` and reports through `cb`, marking the connection busy while it
 * runs (the housekeeper enforces the pool's statement deadline on busy connections) and
 * remembering a failure as the connection's own. An error replaced by the deadline that
 * destroyed the connection is reported as that deadline. A caller's statement (`site` given) goes
 * through the connection's prepared-statement cache; the library's own statements never do. A
 * `meter` counts the statement and times it (`ms` in `cb`; 0 without one).
 */
export function send<R extends QueryResultRow>(conn: PooledConnection, text: unknown, values: unknown, cb: QueryCallback<R>, site?: StatementSite, meter?: Meter): void {
  const t0 = meter === undefined ? 0 : performance.now();
  meter?.sent();
  conn.began();
  try {
    sendThroughCache(conn.client, site === undefined ? undefined : conn.statements, site, text, values, (err, res) => {
      const reported = conn.finished(err);
      const ms = meter === undefined ? 0 : meter.answered(t0, text, reported);
      if (reported !== undefined) cb(reported, undefined, ms);
      else cb(undefined, res as QueryResult<R>, ms);
    });
  } catch (err) {
    // pg rejected the arguments before sending anything (e.g. a null query): the connection is fine.
    conn.finished(undefined);
    cb(err as Error, undefined, meter === undefined ? 0 : meter.answered(t0, text, err as Error));
  }
}

/** `send` as a promise (uncounted: the library's own statements on a lent connection). */
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
  meter?: Meter,
): Promise<QueryResult<R>> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      const where = describe();
      void conn.abandon(new PoolStatementTimeoutError(where.database, where.node, where.address, timeoutMs, text), CANCEL_TIMEOUT_MS);
    }, timeoutMs);
    timer.unref();
    send<R>(
      conn,
      text,
      values,
      (err, res) => {
        clearTimeout(timer);
        if (err) reject(err);
        else resolve(res!);
      },
      undefined,
      meter,
    );
  });
}
