import { EventEmitter } from 'node:events';
import type { PoolClient, QueryConfig, QueryResult, QueryResultRow } from 'pg';
import { callBack, functionAsQuery, type NodeCallback } from './node-callback.js';

/** What the facade needs from the node pool behind it. */
export interface FacadeTarget {
  readonly totalCount: number;
  readonly idleCount: number;
  readonly waitingCount: number;
  readonly expiredCount: number;
  readonly ended: boolean;
  /** Ended, and no connection left. */
  readonly finished: boolean;
  readonly options: Readonly<Record<string, unknown>>;
  query<R extends QueryResultRow>(text: string | QueryConfig, values?: unknown[]): Promise<QueryResult<R>>;
  acquire(): Promise<PoolClient>;
  end(): Promise<void>;
}

type Callback<T> = (err: Error | undefined, value: T | undefined) => void;

/**
 * The `pg.Pool`-compatible face of a node pool (`@InjectPool()`, `db.primary.pool`,
 * `db.replica.pools`): `query` (promise or callback, text or `QueryConfig`), `connect()` with
 * `release(err?)`, `end()`, `totalCount` / `idleCount` / `waitingCount`, and the `connect`,
 * `acquire`, `release`, `remove` and `error` events with the physical client, as pg-pool
 * emits them. Everything goes through the library's pool: deadlines, validation, hygiene and
 * metrics apply.
 */
export class PoolFacade extends EventEmitter {
  readonly #target: FacadeTarget;
  #endCalled = false;
  /** Listeners for any of the pg-pool events: the pool only builds event arguments then. */
  heard = false;

  constructor(target: FacadeTarget) {
    super();
    this.#target = target;
    this.on('newListener', () => {
      this.heard = true;
    });
  }

  get totalCount(): number {
    return this.#target.totalCount;
  }

  get idleCount(): number {
    return this.#target.idleCount;
  }

  get waitingCount(): number {
    return this.#target.waitingCount;
  }

  get expiredCount(): number {
    return this.#target.expiredCount;
  }

  get ending(): boolean {
    return this.#target.ended;
  }

  get ended(): boolean {
    return this.#target.finished;
  }

  get options(): Readonly<Record<string, unknown>> {
    return this.#target.options;
  }

  query<R extends QueryResultRow = any>(text: string | QueryConfig, values?: unknown[] | Callback<QueryResult<R>>, callback?: Callback<QueryResult<R>>): any {
    if (typeof text === 'function') return functionAsQuery(text as NodeCallback<unknown>);
    if (typeof values === 'function') {
      callback = values;
      values = undefined;
    }
    const result = this.#target.query<R>(text, values);
    if (callback === undefined) return result;
    return callBack(result, callback);
  }

  connect(callback?: (err: Error | undefined, client: PoolClient | undefined, done: (release?: unknown) => void) => void): any {
    const acquired = this.#target.acquire();
    if (callback === undefined) return acquired;
    acquired.then(
      (client) => process.nextTick(callback, undefined, client, (err?: unknown) => client.release(err as Error | boolean | undefined)),
      (err: Error) =>
        process.nextTick(callback, err, undefined, () => {
          /* nothing was lent */
        }),
    );
    return undefined;
  }

  /** As pg-pool's: checked-out clients finish first; a second call fails (the module's own shutdown is not one). */
  end(callback?: (err?: Error) => void): any {
    if (this.#endCalled) {
      const err = new Error('Called end on pool more than once');
      if (callback === undefined) return Promise.reject(err);
      return callBack(Promise.reject(err), callback);
    }
    this.#endCalled = true;
    const ended = this.#target.end();
    if (callback === undefined) return ended;
    return callBack(ended, callback);
  }
}
