import type { PoolClient, QueryResult, QueryResultRow } from 'pg';
import type { NodePool, QueryInput } from '../pool/node-pool.js';
import { TransactionEndedError, type TransactionOutcome } from '../pool.exceptions.js';
import type { TransactionOptions } from '../pool.interfaces.js';
import { Checkout, checkoutOf, setGate, type LendGate } from '../pool/checkout.js';
import { sendAsync } from '../pool/statement-deadline.js';

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
 * called inside it. It is the lifecycle gate of the client's lent handle: it owns the client until
 * it ends (the handle's `release()` does nothing); after that, every statement that still reaches
 * it (a sibling promise, a timer, a kept `tx.client`) rejects with `TransactionEndedError`. Where
 * an error came from is the handle's checkout's to say (`checkout`).
 */
export class PinnedTransaction implements LendGate {
  #state: TransactionState = 'open';
  #outcome: TransactionOutcome = 'committing';
  /** The first error a statement of this transaction produced: the one that aborted it, if it was. */
  #firstError: unknown;
  /** Set when a joined inner call threw: the transaction may only roll back. */
  rollbackOnly: { cause: unknown } | undefined;
  /** `readOnlyInTransaction: 'warn'` logged once for this transaction. */
  warned = false;
  /** The checkout behind the client: whether the connection failed, and which errors came from it. */
  readonly checkout: Checkout;
  readonly handle: TransactionHandle;

  constructor(
    readonly database: string,
    readonly node: NodePool,
    readonly raw: PoolClient,
    readonly options: TransactionOptions,
  ) {
    this.checkout = checkoutOf(raw) ?? new Checkout(undefined);
    setGate(raw, this);
    this.handle = { client: raw, query: (text, values) => this.query(text, values) };
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
      this.checkout.produced(err);
      throw err;
    });
  }

  /** ROLLBACK from the runner, past the gate (which refuses everyone else once the transaction ended). */
  rollback(): Promise<unknown> {
    const conn = this.checkout.conn;
    return conn === undefined ? this.raw.query('ROLLBACK') : sendAsync(conn, 'ROLLBACK', undefined);
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

  /** `LendGate`: an error a statement of this transaction produced (the first is the one that aborted it, if it was). */
  produced(err: unknown): void {
    this.#firstError ??= err;
  }
}
