// Errors of what a session carries: prepared statements and session contexts.
import { PoolError } from './pool-error.js';

/** A named prepared statement (`QueryConfig.name`) was run while `pgbouncer` is `true`. */
export class NamedStatementUnsupportedError extends PoolError {
  override name = 'NamedStatementUnsupportedError';
  readonly code = 'NAMED_STATEMENT_UNSUPPORTED';
  constructor(
    readonly database: string,
    readonly statement: string,
  ) {
    super(
      `Cannot run the named prepared statement "${statement}" on "${database}" because the pool is in PgBouncer mode (pgbouncer: true): ` +
        'in transaction pooling the next statement may reach another server connection, where it was never prepared. ' +
        'Please make sure that the query has no `name` (node-postgres then sends an unnamed statement), or set pgbouncer to false when connecting to PostgreSQL directly.',
    );
  }
}

/**
 * Inside a transaction, a statement the library had prepared automatically was refused by the
 * server: a schema change invalidated its plan (`0A000` cached plan must not change result type)
 * or the session lost it (`26000`). `code` is the server's SQLSTATE, `cause` its error. The
 * transaction is aborted; the statement is never re-run inside it.
 */
export class PreparedStatementInvalidatedError extends PoolError {
  override name = 'PreparedStatementInvalidatedError';
  readonly code: string;
  constructor(
    readonly database: string,
    readonly node: string,
    cause: unknown,
  ) {
    const serverCode = String((cause as { code?: unknown } | null)?.code ?? '');
    const serverMessage = String((cause as { message?: unknown } | null)?.message ?? cause);
    super(
      `Cannot run the statement in this transaction on "${database}/${node}" because the plan prepared for it automatically is no longer valid ` +
        `(${serverCode}: ${serverMessage}); a table it reads changed, or the session lost its prepared statements. ` +
        'A statement inside a transaction is never run again silently, so the transaction is aborted. ' +
        'Please make sure that the whole transaction is retried (the statement is prepared again on the next attempt), ' +
        'or set preparedStatements.enabled to false if the schema changes under running transactions.',
      { cause },
    );
    this.code = serverCode;
  }
}

/** `db.withSession()`, or a `@WithSession()` method (`method`), called inside an open transaction of the same database. */
export class SessionContextInTransactionError extends PoolError {
  override name = 'SessionContextInTransactionError';
  readonly code = 'SESSION_CONTEXT_IN_TRANSACTION';
  constructor(
    readonly database: string,
    method?: string,
  ) {
    super(
      `Cannot set a session context for "${database}" inside an open transaction because the context is applied when a transaction begins. ` +
        (method === undefined
          ? 'Please make sure that db.withSession() wraps db.transaction() (or @Transactional()), not the other way around.'
          : `Please make sure that the @WithSession() method ${method} is called outside db.transaction() and @Transactional() methods; ` +
            'to run it in a transaction of its own, write @Transactional() below @WithSession() on it.'),
    );
  }
}
