import type { EventEmitter } from 'node:events';
import pg from 'pg';
import type { PoolClient, QueryConfig, QueryResult } from 'pg';
import type { RoutedHost } from './routed-host.js';
import { callBack, functionAsQuery, type NodeCallback } from '../pool/node-callback.js';
import { PoolError } from '../pool.exceptions.js';
import { notOpenedHere, RoutedClient, type QueryCallback } from './routed-client.js';
import { routingStorage } from './routing-context.js';
import { isSubmittable, isTransactionControl, statementText } from '../session/statement-kind.js';

/** pg.Pool events a routed pool passes on from every pool of its database, while someone listens. */
const FORWARDED_EVENTS: ReadonlySet<string | symbol> = new Set(['connect', 'acquire', 'release', 'remove', 'error']);
const COUNTS = ['totalCount', 'idleCount', 'waitingCount', 'expiredCount'] as const;
/** Released clients kept for reuse: Kysely keys its per-connection state by the client object, as pg.Pool reuses its clients. */
const FREE_CLIENTS_MAX = 64;

type ConnectCallback = (err: Error | undefined, client: PoolClient | undefined, done: (release?: unknown) => void) => void;

/**
 * `db.routedPool`: a `pg.Pool` (it is an instance of one, as Drizzle and Prisma's adapter check)
 * that opens no connection of its own. Every statement, and every client from `connect()`, goes
 * where the current scope says — the pinned transaction client, a replica under `@ReadOnly()`,
 * else the primary — through the database's own pools, so query builders get the routing,
 * read-your-writes, bans, retries and hygiene of `db.query`.
 */
export class RoutedPool extends pg.Pool {
  readonly #cluster: RoutedHost;
  readonly #forwarders = new Map<string | symbol, (...args: unknown[]) => void>();
  readonly #free: RoutedClient[] = [];
  readonly #recycle = (client: RoutedClient) => {
    if (this.#free.length < FREE_CLIENTS_MAX) this.#free.push(client);
  };

  static {
    // Declared as plain fields by @types/pg, so they are defined here rather than as class accessors.
    for (const key of COUNTS) {
      Object.defineProperty(RoutedPool.prototype, key, {
        configurable: true,
        get(this: RoutedPool) {
          let sum = 0;
          for (const node of this.#cluster.nodes) sum += node.pool[key];
          return sum;
        },
      });
    }
  }

  constructor(cluster: RoutedHost) {
    super();
    this.#cluster = cluster;
    const emitter = this as EventEmitter;
    emitter.on('newListener', (event: string | symbol) => this.#forward(event));
    emitter.on('removeListener', (event: string | symbol) => this.#stopForwarding(event));
  }

  /** `query(text | config, values?, callback?)`: one statement, routed by the current scope. Cursors and streams need `connect()`. */
  override query(text: unknown, values?: unknown, callback?: unknown): any {
    if (typeof text === 'function') return functionAsQuery(text as NodeCallback<unknown>);
    if (typeof values === 'function') {
      callback = values;
      values = undefined;
    }
    const result = isSubmittable(text)
      ? Promise.reject(
          new PoolError(
            'Cannot run a cursor or stream through db.routedPool.query because it needs one connection for its whole life. ' +
              'Please make sure that you run it on a client from db.routedPool.connect() (or db.withClient()).',
          ),
        )
      : this.#routed(text as string | QueryConfig, values as unknown[] | undefined);
    if (typeof callback !== 'function') return result;
    return callBack(result, callback as QueryCallback);
  }

  #routed(text: string | QueryConfig, values: unknown[] | undefined): Promise<QueryResult> {
    if (routingStorage.getStore()?.tx?.has(this.#cluster.name) === true && isTransactionControl(statementText(text))) {
      return Promise.reject(notOpenedHere(this.#cluster.name, statementText(text)));
    }
    return this.#cluster.query(text, values);
  }

  /**
   * Inside a routing scope (a request, `@ReadOnly()`, a transaction): a client that follows the scope
   * (see `RoutedClient`); it holds a real connection only from BEGIN, a session command or a cursor
   * until `release()`. Outside any scope every statement would go to the primary: the current
   * primary's client is lent, as `pg.Pool.connect()` lends one (a real connection, one object per
   * physical connection, released with pg-pool's rules) — except behind PgBouncer, where the routed
   * client adds the statement deadline to the builder's transactions.
   */
  override connect(callback?: unknown): any {
    const result = this.#cluster.closed
      ? Promise.reject(
          new PoolError(
            `Cannot take a client from db.routedPool because the pools of database "${this.#cluster.name}" were closed. ` +
              'Please make sure that the application is not shutting down when the query builder runs.',
          ),
        )
      : routingStorage.getStore() === undefined && !this.#cluster.primary.config.pgbouncer
        ? this.#primaryClient()
        : Promise.resolve((this.#free.pop()?.open() ?? new RoutedClient(this.#cluster, this.#recycle)) as unknown as PoolClient);
    if (typeof callback !== 'function') return result;
    const cb = callback as ConnectCallback;
    result.then(
      (client) => process.nextTick(cb, undefined, client, (err?: unknown) => client.release(err as Error | boolean | undefined)),
      (err: Error) => process.nextTick(cb, err, undefined, () => undefined),
    );
    return undefined;
  }

  #primaryClient(): Promise<PoolClient> {
    try {
      return this.#cluster.topology.requireWriter().pool.connect();
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  /**
   * Harmless: the module owns the pools and ends them at application shutdown, so a query builder's
   * `destroy()` / `$client.end()` does not close connections that other code shares.
   */
  override end(callback?: unknown): any {
    if (typeof callback === 'function') {
      queueMicrotask(() => (callback as () => void)());
      return undefined;
    }
    return Promise.resolve();
  }

  #forward(event: string | symbol): void {
    if (!FORWARDED_EVENTS.has(event) || this.#forwarders.has(event)) return;
    const forwarder = (...args: unknown[]) => this.emit(event, ...args);
    this.#forwarders.set(event, forwarder);
    for (const node of this.#cluster.nodes) (node.pool as EventEmitter).on(event, forwarder);
  }

  #stopForwarding(event: string | symbol): void {
    const forwarder = this.#forwarders.get(event);
    if (forwarder === undefined || this.listenerCount(event) > 0) return;
    this.#forwarders.delete(event);
    for (const node of this.#cluster.nodes) (node.pool as EventEmitter).off(event, forwarder);
  }
}
