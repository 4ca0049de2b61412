// Errors of transactions.
import { PoolError } from './pool-error.js';

/** How a transaction ended, for `TransactionEndedError`. */
export type TransactionOutcome = 'committing' | 'committed' | 'rolled back' | 'ended';

/**
 * The server did not commit a transaction whose callback succeeded: a statement inside it failed
 * and the error was caught (the transaction was aborted, PostgreSQL then answers COMMIT with
 * ROLLBACK), or a joined inner transaction threw. Nothing of the transaction was kept.
 */
export class TransactionRolledBackError extends PoolError {
  override name = 'TransactionRolledBackError';
  readonly code = 'TRANSACTION_ROLLED_BACK';
  /** SQLSTATE of the error that aborted the transaction, when the server sent one (e.g. `22012`). */
  readonly sqlState: string | undefined;
  constructor(
    readonly database: string,
    reason: string,
    cause?: unknown,
  ) {
    super(
      `Cannot commit the transaction on "${database}" because ${reason}, so the server rolled it back and nothing of it was kept. ` +
        'Please make sure that an error inside a transaction is not caught and ignored: let it reach the transaction, or run the statement that may fail in a transaction of its own (propagation: "requiresNew").',
      cause === undefined ? undefined : { cause },
    );
    const code = (cause as { code?: unknown } | null | undefined)?.code;
    this.sqlState = typeof code === 'string' && code.length === 5 ? code : undefined;
  }
}

/**
 * A statement tried to use a transaction that has already committed or rolled back, is committing,
 * or `ended` with an unknown outcome (its connection failed during COMMIT).
 */
export class TransactionEndedError extends PoolError {
  override name = 'TransactionEndedError';
  readonly code = 'TRANSACTION_ENDED';
  constructor(
    readonly database: string,
    readonly outcome: TransactionOutcome,
  ) {
    super(
      `Cannot run a statement in the transaction on "${database}" because the transaction ${outcome === 'committing' ? 'is committing' : `has already ${outcome}`}; ` +
        'the statement was not sent. Please make sure that every statement of a transaction is awaited before its callback returns ' +
        '(a promise left running, a timer or an event listener still holds the transaction after it ended).',
    );
  }
}

/** `consistencyToken()` was called inside an open transaction, whose writes are not committed yet. */
export class TransactionInProgressError extends PoolError {
  override name = 'TransactionInProgressError';
  readonly code = 'TRANSACTION_IN_PROGRESS';
  constructor(readonly database: string) {
    super(
      `Cannot give a consistency token for "${database}" because it was asked for inside an open transaction, whose writes are not committed yet ` +
        'and have no WAL position to wait for. Please make sure that consistencyToken() is called after the transaction: after db.transaction() resolved, ' +
        'or in the caller of the @Transactional() method.',
    );
  }
}

/** A nested transaction asked for options the enclosing transaction it would join does not have. */
export class TransactionOptionsConflictError extends PoolError {
  override name = 'TransactionOptionsConflictError';
  readonly code = 'TRANSACTION_OPTIONS_CONFLICT';
  constructor(
    readonly database: string,
    readonly option: string,
    readonly requested: unknown,
    readonly current: unknown,
  ) {
    super(
      `Cannot join the transaction on "${database}" with ${option} ${JSON.stringify(requested)} because the enclosing transaction was opened with ` +
        `${current === undefined ? `no ${option} (the server default)` : `${option} ${JSON.stringify(current)}`}. ` +
        'Please make sure that nested transactions ask for the same options as the one they join (or none), or use propagation: "requiresNew" for a transaction of its own.',
    );
  }
}
