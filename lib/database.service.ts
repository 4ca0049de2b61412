import type { Pool, PoolClient, QueryResult, QueryResultRow } from 'pg';
import type { Observable } from 'rxjs';
import type { PoolCluster } from './core/pool-cluster.js';
import type { TransactionHandle } from './transactions/pinned-transaction.js';
import { runInScope, runWithSession } from './routing/routing-context.js';
import { compileSessionContext, type SessionContext } from './session/session-context.js';
import { RoutedPool } from './routing/routed-pool.js';
import type { QueryInput } from './pool/node-pool.js';
import type { PoolEvent } from './pool.events.js';
import type { TransactionOptions } from './pool.interfaces.js';

export type { TransactionHandle, QueryInput };

/** Direct access to the primary, whatever the current scope says (inside a transaction: the transaction's client). */
export interface PrimaryAccess {
  query<R extends QueryResultRow = any>(text: QueryInput, values?: unknown[]): Promise<QueryResult<R>>;
  withClient<T>(fn: (client: PoolClient) => Promise<T> | T): Promise<T>;
  /** The raw `pg.Pool`: no routing, validation or metrics. */
  readonly pool: Pool;
}

/**
 * Direct access to the replicas (bans, lag checks, retry and fallback apply), whatever the current
 * scope says: no transaction, no read-your-writes.
 */
export interface ReplicaAccess {
  query<R extends QueryResultRow = any>(text: QueryInput, values?: unknown[]): Promise<QueryResult<R>>;
  withClient<T>(fn: (client: PoolClient) => Promise<T> | T): Promise<T>;
  /** The raw `pg.Pool` of each replica, in configuration order. */
  readonly pools: readonly Pool[];
}

/**
 * The database of one `PoolModule.forRoot()`: queries go where the current scope says (a pinned
 * transaction, a replica inside `@ReadOnly()`, else the primary); every client it takes is given back.
 */
export class DatabaseService {
  readonly primary: PrimaryAccess;
  readonly replica: ReplicaAccess;
  /**
   * A `pg.Pool` for query builders (Kysely, Drizzle, Prisma's pg adapter) whose every statement and
   * `connect()` goes where the current scope says, as `query()` does. It opens no connection of its
   * own and its `end()` is harmless: the module ends the pools. See docs/query-builders.md.
   */
  readonly routedPool: Pool;

  constructor(private readonly cluster: PoolCluster) {
    this.routedPool = new RoutedPool(cluster);
    this.primary = {
      query: (text, values) => cluster.primaryQuery(text, values),
      withClient: (fn) => cluster.withClient(fn, false),
      get pool() {
        return cluster.primary.pool;
      },
    };
    this.replica = {
      query: (text, values) => cluster.replicaQuery(text, values),
      withClient: (fn) => cluster.withReplicaClient(fn),
      get pools() {
        return cluster.replicas.map((r) => r.node.pool);
      },
    };
  }

  /** Name of this database (`default` unless `name` was given). */
  get name(): string {
    return this.cluster.name;
  }

  /** Typed stream of pool events: connect, acquire, release, remove, error, slow-query, leak, bans, breaker, alerts. */
  get events$(): Observable<PoolEvent> {
    return this.cluster.events$;
  }

  /** Runs one statement on the node the current scope picks. */
  query<R extends QueryResultRow = any>(text: QueryInput, values?: unknown[]): Promise<QueryResult<R>> {
    return this.cluster.query<R>(text, values);
  }

  /**
   * Lends a client to `fn` and gives it back when `fn` settles, even if it throws. The node is the
   * scope's choice, or a replica with `{ readOnly: true }`. Inside a transaction, `fn` gets the
   * transaction's client. Do not call `client.release()` yourself.
   */
  withClient<T>(fn: (client: PoolClient) => Promise<T> | T, options: { readOnly?: boolean } = {}): Promise<T> {
    return this.cluster.withClient(fn, options.readOnly);
  }

  /**
   * Runs `fn` in a transaction on one primary client. Statements made through this service
   * anywhere below (across awaits) join it; COMMIT on success, ROLLBACK on a throw, the client is
   * always released. Resolves only when the server committed: an aborted or rollback-only
   * transaction rejects with `TransactionRolledBackError`. Once it ended, every statement that
   * still uses it rejects with `TransactionEndedError`.
   */
  transaction<T>(fn: (tx: TransactionHandle) => Promise<T> | T, options?: TransactionOptions): Promise<T> {
    return this.cluster.transaction(fn, options);
  }

  /**
   * Runs `fn` in a routing scope, as every HTTP request gets from the module: for code that no
   * request reaches (a cron job, a queue consumer without the interceptor, a script). Statements
   * on the primary inside it count as writes, so later `@ReadOnly()` reads inside it see them
   * (read-your-writes), and `consistencyToken()` covers them. Inside an existing scope (a request,
   * a transaction, `@ReadOnly()`), `fn` joins that scope. Returns what `fn` returns.
   */
  scope<T>(fn: () => T): T {
    return runInScope(fn);
  }

  /**
   * Runs `fn` with a session context for this database: every statement below it (across awaits,
   * on the primary and replicas, in transactions, through `withClient` and `routedPool`) runs in a
   * transaction with `role` and `settings` applied by `set_config(…, true)`. Replaces the request's
   * context for this database; `{}` runs without one. Throws `PoolConfigurationError` for a bad role
   * or setting name, and `SessionContextInTransactionError` inside an open transaction (the
   * context is applied when a transaction begins).
   */
  withSession<T>(context: SessionContext, fn: () => T): T {
    return runWithSession(this.cluster.name, compileSessionContext(context, this.cluster.options.session.secret, 'withSession(context)'), fn);
  }

  /**
   * The primary WAL position that covers this scope's writes, as a string (`0/16B3748`). Send it
   * back in the consistency header (or `@ReadOnly({ minLsn })`) so a later request reads them.
   * Inside an open transaction it rejects with `TransactionInProgressError`: ask after the commit.
   */
  consistencyToken(): Promise<string | undefined> {
    return this.cluster.consistencyToken();
  }
}
