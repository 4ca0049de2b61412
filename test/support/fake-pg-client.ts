import { EventEmitter } from 'node:events';
import type net from 'node:net';
import type { QueryResult } from 'pg';

// The one stand-in for `pg.Client` with no server behind it, shared by the unit specs (lib/**/*.spec.ts)
// and the profiling run of the benchmark (bench/bench.profile.ts --fake). It answers every statement on
// the next macrotask and keeps PostgreSQL's transaction states: BEGIN opens a transaction, an error in it
// aborts it (later statements fail with 25P02, COMMIT answers ROLLBACK), COMMIT and ROLLBACK close it.
// The switches below make it behave like a server that is down, full, silent or refusing a statement;
// they are static (one "server" per test file: Jest gives every file its own module registry), and
// `FakeClient.reset()` puts them back.

type Callback = (err: Error | null, res?: QueryResult) => void;

/** What `pg.Client` is given: the pool's connection settings, and the socket factory pg takes as `stream`. */
export interface FakeClientConfig {
  stream?: (config: unknown) => net.Socket;
  [key: string]: unknown;
}

export const sqlError = (message: string, code: string): Error => Object.assign(new Error(message), { code });

export class FakeClient extends EventEmitter {
  /** Statements get no answer (a half-dead server) until the connection ends. */
  static silent = false;
  /** Every connect fails with ECONNREFUSED (a server that is down); counted in `refused`. */
  static refuse = false;
  static refused = 0;
  /** Every connect fails with 53300 (no connection slot left on the server). */
  static full = false;
  /** Statements matching it fail with `failWith()` (an SQL error, not a broken connection). */
  static failOn: RegExp | undefined;
  static failWith: () => Error = () => sqlError('permission denied', '42501');
  /** Keep every statement in `sent` (off for long profiling runs, where the list would only grow). */
  static recordStatements = true;
  static opened = 0;
  static instances: FakeClient[] = [];

  /** Puts every switch back and forgets the clients made so far. */
  static reset(): void {
    FakeClient.silent = false;
    FakeClient.refuse = false;
    FakeClient.refused = 0;
    FakeClient.full = false;
    FakeClient.failOn = undefined;
    FakeClient.failWith = () => sqlError('permission denied', '42501');
    FakeClient.recordStatements = true;
    FakeClient.instances = [];
  }

  readonly id = ++FakeClient.opened;
  /** Every statement sent, in order. */
  readonly sent: string[] = [];
  /** The transaction status pg reports: idle, in a transaction, in a failed transaction. */
  status: 'I' | 'T' | 'E' = 'I';
  /** The tag a COMMIT of a healthy transaction answers with (the server may answer ROLLBACK). */
  commitTag = 'COMMIT';
  ended = false;
  _queryable = true;
  _ending = false;
  readonly #pending: Callback[] = [];

  constructor(readonly config: FakeClientConfig = {}) {
    super();
    FakeClient.instances.push(this);
  }

  connect(): Promise<void>;
  connect(callback: (err?: Error) => void): void;
  connect(callback?: (err?: Error) => void): Promise<void> | void {
    if (callback === undefined) return new Promise((resolve, reject) => this.connect((err) => (err ? reject(err) : resolve())));
    const socket = this.config.stream?.(this.config);
    socket?.once('close', () => this.#terminate());
    if (FakeClient.full) {
      setImmediate(callback, sqlError('sorry, too many clients already', '53300'));
    } else if (FakeClient.refuse) {
      FakeClient.refused++;
      setImmediate(callback, sqlError('connect ECONNREFUSED 127.0.0.1:1', 'ECONNREFUSED'));
    } else {
      setImmediate(callback);
    }
  }

  query(text: unknown, values?: unknown[]): Promise<QueryResult>;
  query(text: unknown, callback: Callback): void;
  query(text: unknown, values: unknown[] | undefined, callback: Callback): void;
  query(text: unknown, values?: unknown, callback?: Callback): Promise<QueryResult> | void {
    const cb = (typeof values === 'function' ? values : callback) as Callback | undefined;
    if (cb === undefined) return new Promise((resolve, reject) => this.query(text, values as unknown[] | undefined, (err, res) => (err ? reject(err) : resolve(res!))));
    const sql = typeof text === 'string' ? text : (text as { text: string }).text;
    if (this.ended) {
      setImmediate(cb, new Error('Client was closed and is not queryable'));
      return;
    }
    if (FakeClient.recordStatements) this.sent.push(sql);
    if (FakeClient.silent) {
      this.#pending.push(cb);
      return;
    }
    const { error, command } = this.#answer(sql);
    if (error) setImmediate(cb, error);
    else setImmediate(cb, null, { command, rowCount: 1, oid: 0, fields: [], rows: [{ client: this.id }] });
  }

  /** PostgreSQL's answer to `sql` in the current transaction state, and the state it leaves. */
  #answer(sql: string): { error?: Error; command: string } {
    if (/^BEGIN|^START TRANSACTION/i.test(sql)) {
      this.status = 'T';
      return { command: 'BEGIN' };
    }
    if (/^COMMIT/i.test(sql)) {
      const command = this.status === 'E' ? 'ROLLBACK' : this.commitTag;
      this.status = 'I';
      return { command };
    }
    if (/^ROLLBACK/i.test(sql)) {
      this.status = 'I';
      return { command: 'ROLLBACK' };
    }
    if (this.status === 'E') return { error: sqlError('current transaction is aborted, commands ignored until end of transaction block', '25P02'), command: '' };
    if (FakeClient.failOn?.test(sql)) {
      if (this.status === 'T') this.status = 'E';
      return { error: FakeClient.failWith(), command: '' };
    }
    return { command: sql.split(/\s/, 1)[0]!.toUpperCase() };
  }

  #terminate(): void {
    for (const cb of this.#pending.splice(0)) cb(new Error('Connection terminated unexpectedly'));
    if (!this.ended) {
      this.ended = true;
      this.emit('end');
    }
  }

  getTransactionStatus(): string {
    return this.status;
  }

  end(): Promise<void>;
  end(callback: () => void): void;
  end(callback?: () => void): Promise<void> | void {
    this._ending = true;
    this.#terminate();
    if (callback) {
      setImmediate(callback);
      return;
    }
    return Promise.resolve();
  }

  ref(): void {}
  unref(): void {}
}
