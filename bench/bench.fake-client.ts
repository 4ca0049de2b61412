import { EventEmitter } from 'node:events';
import type { QueryResult } from 'pg';

const RESULT: QueryResult = { command: 'SELECT', rowCount: 1, oid: 0, fields: [], rows: [{ '?column?': 1 }] };

/**
 * A stand-in for `pg.Client` that answers every statement on the next macrotask without a
 * server, so a profile shows only what the pools themselves cost. Profiling aid only: never
 * used by the benchmark figures.
 */
export class FakeClient extends EventEmitter {
  _queryable = true;
  _ending = false;

  constructor(_config?: unknown) {
    super();
  }

  connect(callback?: (err?: Error) => void): Promise<void> | void {
    if (callback) {
      setImmediate(callback);
      return;
    }
    return new Promise((resolve) => setImmediate(resolve));
  }

  query(text: unknown, values?: unknown, callback?: (err: Error | null, res: QueryResult) => void): Promise<QueryResult> | void {
    const cb = typeof values === 'function' ? (values as typeof callback) : callback;
    if (cb) {
      setImmediate(cb, null, RESULT);
      return;
    }
    return new Promise((resolve) => setImmediate(resolve, RESULT));
  }

  getTransactionStatus(): string {
    return 'I';
  }

  end(callback?: () => void): Promise<void> | void {
    this._ending = true;
    if (callback) {
      setImmediate(callback);
      return;
    }
    return Promise.resolve();
  }

  ref(): void {}
  unref(): void {}
}
