import type { QueryResult, QueryResultRow } from 'pg';
import { breaksConnection } from '../errors/failure-class.js';
import { PoolEndedError } from '../pool.exceptions.js';
import type { PoolState } from './pool-state.js';
import type { PooledConnection } from './pooled-connection.js';
import { sendWithin } from './statement-deadline.js';

/**
 * The role checks' connection of one node, outside the pool (`application_name` suffixed
 * `:roles`): an exhausted pool must not look like a dead server. A connection that times out or
 * breaks is dropped; the next check opens a new one. It never keeps the process alive.
 */
export class RoleConnection {
  readonly #s: PoolState;
  #conn: Promise<PooledConnection> | undefined;

  constructor(s: PoolState) {
    this.#s = s;
  }

  /** One statement of the role checks, bounded by `timeoutMs` as a whole; counted with the library's own statements. */
  query<R extends QueryResultRow>(text: string, timeoutMs: number): Promise<QueryResult<R>> {
    const s = this.#s;
    if (s.endPromise !== undefined) return Promise.reject(new PoolEndedError(s.database, s.name));
    const t0 = performance.now();
    s.counters.systemQueries++;
    let opening = this.#conn;
    if (opening === undefined) {
      opening = s.factory.openDetached(':roles', timeoutMs).then((conn) => {
        // A new connection reached the server: an open breaker closes and the pool refills now,
        // rather than at its next trial (the role checks are the one low-rate probe of a down node).
        s.node.reachable();
        return conn;
      });
      this.#conn = opening;
      opening.catch(() => this.drop(opening!));
    }
    const used = opening;
    return used.then((conn) => {
      if (conn.broken) {
        this.drop(used);
        return this.query<R>(text, Math.max(1, timeoutMs - (performance.now() - t0)));
      }
      const left = Math.max(1, Math.ceil(timeoutMs - (performance.now() - t0)));
      return sendWithin<R>(conn, text, undefined, left, s.where).catch((err: unknown) => {
        if (conn.broken || breaksConnection(err)) this.drop(used);
        throw err;
      });
    });
  }

  /** Closes the connection (`conn`: only if it is still the current one; default: whichever is). */
  drop(conn: Promise<PooledConnection> | undefined = this.#conn): void {
    if (conn === undefined || this.#conn !== conn) return;
    this.#conn = undefined;
    conn.then(
      (c) => void c.close(0),
      () => undefined,
    );
  }
}
