import type { PoolClient, QueryResult, QueryResultRow } from 'pg';
import type { NodePool, QueryInput } from '../core/node-pool.js';
import { TransactionEndedError, type TransactionOutcome } from '../pool.exceptions.js';
import type { TransactionOptions } from '../pool.interfaces.js';
import { ClientWatch, guardClient, type ClientGate } from './pinned-client.js';

export interface QueryRunner {
  query<R extends QueryResultRow = any>(text: QueryInput, values?: unknown[]): Promise<QueryResult<R>>;
}

/** The handle a transaction callback receives. */
export interface TransactionHandle extends QueryRunner {
  /** The pinned primary client. Do not release it: the transaction does. Once the transaction ended, every statement on it rejects. */
  readonly client: PoolClient;
}

/**
 * `open`: statements run on the pinned client; `committing`: COMMIT was sent, nothing else may
 * be; `ended`: committed or rolled back, the client is back in the pool.
 */
export type TransactionState = 'open' | 'committing' | 'ended';

/**
 * A transaction pinned to one primary client, visible (through the routing scope) to everything
 * called inside it. It owns the client until it ends; after that, every statement that still
 * reaches it (a sibling promise, a timer, a kept `tx.client`) rejects with `TransactionEndedError`.
 */
export class PinnedTransaction implements ClientGate {
  #state: TransactionState = 'open';
  #outcome: TransactionOutcome = 'committing';
  /** The first error a statement of this transaction produced: the one that aborted it, if it was. */
  #firstError: unknown;
  /** Set when a joined inner call threw: the transaction may only roll back. */
  rollbackOnly: { cause: unknown } | undefined;
  /** `readOnlyInTransaction: 'warn'` logged once for this transaction. */
  warned = false;
  readonly watch: ClientWatch;
  readonly handle: TransactionHandle;

  constructor(
    readonly database: string,
    readonly node: NodePool,
    readonly raw: PoolClient,
    readonly options: TransactionOptions,
  ) {
    this.watch = new ClientWatch(raw);
    const client = guardClient(raw, this, () => undefined);
    this.handle = { client, query: (text, values) => this.query(text, values) };
  }

  get readOnly(): boolean {
    return this.options.readOnly === true;
  }

  get state(): TransactionState {
    return this.#state;
  }

  get firstError(): unknown {
    return this.#firstError;
  }

  /** `undefined` while open; else the `TransactionEndedError` a statement gets. */
  refusal(): TransactionEndedError | undefined {
    return this.#state === 'open' ? undefined : new TransactionEndedError(this.database, this.#outcome);
  }

  /** Runs one statement in the transaction (metrics and deadlines of the node apply). */
  query<R extends QueryResultRow = any>(text: QueryInput, values?: unknown[]): Promise<QueryResult<R>> {
    const refused = this.refusal();
    if (refused !== undefined) return Promise.reject(refused);
    return this.node.run<R>(this.raw, text, values, false).catch((err: unknown) => {
      this.produced(err);
      throw err;
    });
  }

  /** From now on only the runner talks to the client: COMMIT is on its way. */
  committing(): void {
    this.#state = 'committing';
    this.#outcome = 'committing';
  }

  ended(outcome: Exclude<TransactionOutcome, 'committing'>): void {
    this.#state = 'ended';
    this.#outcome = outcome;
  }

  /** Records an error a statement of this transaction produced. */
  produced(err: unknown): void {
    this.watch.produced(err);
    this.#firstError ??= err;
  }
}
