import { EventEmitter } from 'node:events';
import pg from 'pg';
import type { PoolClient, QueryConfig, QueryResult } from 'pg';
import type { RoutedHost } from './routed-host.js';
import { isConnectionError, sqlState } from '../errors/sql-state.js';
import { discards, RELEASED_TWICE, releasedWith } from '../pool/checkout.js';
import { callBack } from '../pool/node-callback.js';
import { PoolError } from '../pool.exceptions.js';
import { routingStorage } from './routing-context.js';
import { isSubmittable, statementKind, statementText, type StatementKind } from '../session/statement-kind.js';

export type QueryCallback = (err: Error | undefined, res?: QueryResult) => void;
type Submittable = { submit: (...args: unknown[]) => unknown; handleError?: (err: Error) => void };

/** A client taken through `PoolCluster.withClient` (as `RoutedHost`) and held until `give()`: the routing, the write tracking and the release hygiene stay the cluster's. */
interface Lease {
  readonly client: PoolClient;
  give(err?: unknown): void;
}

function lease(cluster: RoutedHost, readOnly: boolean | undefined): Promise<Lease> {
  return new Promise<Lease>((resolve, reject) => {
    cluster
      .withClient(
        (client) =>
          new Promise<void>((done, fail) => {
            resolve({ client, give: (err) => (err === undefined ? done() : fail(err)) });
          }),
        readOnly,
      )
      // Before `resolve`: no client could be taken. After it: the error given back, already handled by the cluster.
      .catch(reject);
  });
}

/** pg-pool's rule: `release(err)` / `release(true)` destroys the connection instead of pooling it again. */
function discardReason(err: unknown, broken: unknown): unknown {
  if (broken !== undefined) return broken;
  if (!discards(err)) return undefined;
  if (isConnectionError(err)) return err;
  const reason = new Error('The client was released with release(err) or release(true), which discards its connection.', err instanceof Error ? { cause: err } : undefined);
  return Object.assign(reason, { connectionError: true });
}

function withCommand(res: QueryResult, command: string): QueryResult {
  res.command = command;
  return res;
}

function releasedError(): PoolError {
  return new PoolError(
    'Cannot run a query on a client of db.routedPool because it was already released. ' +
      'Please make sure that every query on a client from db.routedPool.connect() is made before client.release().',
  );
}

/** A statement that would end (or restart) a library transaction it did not open. */
export function notOpenedHere(database: string, statement: string): PoolError {
  return new PoolError(
    `Cannot run ${JSON.stringify(statement.trim().slice(0, 60))} through db.routedPool because it runs inside a transaction of ` +
      `db.transaction() / @Transactional() on "${database}" that this client did not open with BEGIN; nothing was committed or rolled back. ` +
      'Please make sure that the query builder opens its own transaction on a client from db.routedPool.connect() (it becomes a savepoint), ' +
      'or lets the library transaction end.',
  );
}

let savepointCount = 0;

/**
 * The client `db.routedPool.connect()` hands out. It takes a real connection only when the work
 * needs one:
 * - inside `db.transaction()` / `@Transactional()` every statement runs on the transaction's
 *   client; the builder's BEGIN / COMMIT / ROLLBACK become SAVEPOINT / RELEASE SAVEPOINT /
 *   ROLLBACK TO SAVEPOINT, so its transaction nests in the library's instead of breaking it;
 * - otherwise BEGIN takes one primary client (a session command — SET, LISTEN, a temporary
 *   table… — or a cursor takes one from the node the scope picks) and keeps it until `release()`;
 * - every other statement is routed on its own, as `db.query` would route it (replica under
 *   `@ReadOnly()` with bans, lag, read-your-writes, retry and fallback; else the primary).
 */
export class RoutedClient extends EventEmitter {
  readonly #cluster: RoutedHost;
  readonly #recycle: (client: RoutedClient) => void;
  #joined = false;
  #lease: Lease | undefined;
  #pinning: Promise<Lease> | undefined;
  /** The last statement sent on the held connection, settled or not: the connection goes back after it. */
  #tail: Promise<unknown> = Promise.resolve();
  /** A connection-class error seen on the held connection: it is destroyed on release. */
  #broken: unknown;
  #released = false;
  readonly #savepoints: string[] = [];
  /** Behind PgBouncer, session settings do not survive: the statement deadline is set in each builder transaction, as db.transaction() does. */
  readonly #transactionSettings: string | undefined;
  readonly #forwardError = (err: Error) => {
    if (this.listenerCount('error') > 0) this.emit('error', err);
  };

  /** `recycle` takes back a released client that held no connection, to hand it out again (as pg.Pool reuses its clients). */
  constructor(cluster: RoutedHost, recycle: (client: RoutedClient) => void) {
    super();
    this.#cluster = cluster;
    this.#recycle = recycle;
    const primary = cluster.primary.config;
    this.#transactionSettings = primary.pgbouncer && primary.statementTimeoutMs > 0 ? `SET LOCAL statement_timeout = ${primary.statementTimeoutMs}` : undefined;
    this.open();
  }

  /** Hands the client out (again): it follows the scope of this call from now on. Called by `RoutedPool.connect()`. */
  open(): this {
    this.#released = false;
    this.#joined = routingStorage.getStore()?.tx?.has(this.#cluster.name) === true;
    return this;
  }

  escapeIdentifier(str: string): string {
    return pg.escapeIdentifier(str);
  }

  escapeLiteral(str: string): string {
    return pg.escapeLiteral(str);
  }

  query(text: string | QueryConfig | Submittable, values?: unknown[] | QueryCallback, callback?: QueryCallback): unknown {
    if (typeof values === 'function') {
      callback = values;
      values = undefined;
    }
    if (isSubmittable(text)) return this.#submit(text);
    const result = this.#run(text, values);
    if (callback === undefined) return result;
    return callBack(result, callback);
  }

  release(err?: Error | boolean): void {
    if (this.#released) throw new Error(RELEASED_TWICE);
    this.#released = true;
    const held = this.#lease ?? this.#pinning;
    if (held === undefined) {
      if (this.#joined) this.#abandonSavepoints();
      this.removeAllListeners();
      this.#recycle(this);
      return;
    }
    void this.#tail
      .then(() => held)
      .then(
        (l) => {
          l.client.off('error', this.#forwardError);
          // pg-pool's rule, applied by the lent handle itself as its own release(err) would.
          releasedWith(l.client, err);
          l.give(discardReason(err, this.#broken));
        },
        () => undefined,
      );
  }

  #run(text: string | QueryConfig, values: unknown[] | undefined): Promise<QueryResult> {
    if (this.#released) return Promise.reject(releasedError());
    const kind = statementKind(statementText(text));
    if (this.#lease === undefined && this.#pinning === undefined) {
      if (this.#joined) return this.#inTransaction(kind, text, values);
      if (kind === 'plain' || kind === 'commit' || kind === 'rollback') return this.#cluster.query(text, values);
      this.#hold(kind === 'session' ? undefined : false);
    }
    const sent = this.#onHeld(text, values);
    const settings = this.#transactionSettings;
    if (kind !== 'begin' || settings === undefined) return sent;
    return sent.then((res) => this.#onHeld(settings, undefined).then(() => res));
  }

  /** Takes the connection this client keeps until `release()`: the primary (`false`) or the scope's choice (`undefined`). */
  #hold(readOnly: false | undefined): Promise<Lease> {
    this.#pinning ??= lease(this.#cluster, readOnly).then((l) => {
      this.#lease = l;
      l.client.on('error', this.#forwardError);
      return l;
    });
    return this.#pinning;
  }

  #onHeld(text: string | QueryConfig, values: unknown[] | undefined): Promise<QueryResult> {
    const l = this.#lease;
    const sent = l !== undefined ? l.client.query(text as string, values) : this.#pinning!.then((held) => held.client.query(text as string, values));
    this.#tail = sent.catch((err: unknown) => {
      if (isConnectionError(err)) this.#broken = err;
    });
    return sent;
  }

  #submit<S extends Submittable>(query: S): S {
    if (this.#released) {
      query.handleError?.(releasedError());
      return query;
    }
    if (this.#lease !== undefined) return this.#lease.client.query(query as unknown as pg.Submittable) as unknown as S;
    const client = this.#joined ? this.#cluster.withClient((c) => c) : this.#hold(undefined).then((l) => l.client);
    const sent = client.then((c) => {
      c.query(query as unknown as pg.Submittable);
    });
    const failed = sent.catch((err: Error) => query.handleError?.(err));
    if (!this.#joined) this.#tail = failed;
    return query;
  }

  async #inTransaction(kind: StatementKind, text: string | QueryConfig, values: unknown[] | undefined): Promise<QueryResult> {
    const cluster = this.#cluster;
    if (kind === 'begin') {
      const name = `pgpools_qb_${++savepointCount}`;
      const res = await cluster.query(`SAVEPOINT ${name}`);
      this.#savepoints.push(name);
      return withCommand(res, 'BEGIN');
    }
    if (kind === 'commit' || kind === 'rollback') {
      const name = this.#savepoints.pop();
      if (name === undefined) throw notOpenedHere(this.#cluster.name, statementText(text));
      if (kind === 'rollback') {
        await cluster.query(`ROLLBACK TO SAVEPOINT ${name}`);
        return withCommand(await cluster.query(`RELEASE SAVEPOINT ${name}`), 'ROLLBACK');
      }
      try {
        return withCommand(await cluster.query(`RELEASE SAVEPOINT ${name}`), 'COMMIT');
      } catch (err) {
        // As COMMIT answers on an aborted transaction: the work since BEGIN is rolled back, the caller is told ROLLBACK.
        if (sqlState(err) !== '25P02') throw err;
        await cluster.query(`ROLLBACK TO SAVEPOINT ${name}`);
        return withCommand(await cluster.query(`RELEASE SAVEPOINT ${name}`), 'ROLLBACK');
      }
    }
    if (kind === 'other-transaction-control') throw notOpenedHere(this.#cluster.name, statementText(text));
    return cluster.query(text, values);
  }

  /** Released with its transaction still open: what it did since its BEGIN is rolled back, the library transaction goes on. */
  #abandonSavepoints(): void {
    const first = this.#savepoints[0];
    if (first === undefined) return;
    this.#savepoints.length = 0;
    const cluster = this.#cluster;
    void cluster
      .query(`ROLLBACK TO SAVEPOINT ${first}`)
      .then(() => cluster.query(`RELEASE SAVEPOINT ${first}`))
      .catch(() => undefined);
  }
}
