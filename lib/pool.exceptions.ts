import type { NodeRole } from './pool.interfaces.js';

/** Base class of every error this library throws. */
export class PoolError extends Error {
  override name = 'PoolError';
}

/** A module option or `DB_*` environment variable is invalid. Thrown at startup. */
export class PoolConfigurationError extends PoolError {
  override name = 'PoolConfigurationError';
  constructor(
    readonly field: string,
    readonly expected: string,
    readonly given: string,
    hint?: string,
  ) {
    super(`Invalid ${field}: expected ${expected}, got ${given}.${hint ? ` ${hint}` : ''}`);
  }
}

export interface PoolStateSnapshot {
  total: number;
  idle: number;
  inUse: number;
  waiting: number;
  max: number;
}

export function formatPoolState(s: PoolStateSnapshot): string {
  return `total=${s.total} idle=${s.idle} in-use=${s.inUse} waiting=${s.waiting} max=${s.max}`;
}

/** No connection could be taken from a pool within `acquireTimeoutMs`. */
export class PoolAcquireTimeoutError extends PoolError {
  override name = 'PoolAcquireTimeoutError';
  readonly code = 'POOL_ACQUIRE_TIMEOUT';
  constructor(
    readonly database: string,
    readonly node: string,
    readonly role: NodeRole,
    readonly timeoutMs: number,
    readonly state: PoolStateSnapshot,
    cause?: unknown,
  ) {
    super(
      `Cannot acquire a connection from pool "${database}/${node}" (${role}) because none became available within ${timeoutMs}ms ` +
        `(${formatPoolState(state)}): timeout exceeded when trying to connect. Please make sure that clients are released, or raise max / acquireTimeoutMs.`,
      cause === undefined ? undefined : { cause },
    );
  }
}

/** A node's circuit breaker is open: it fails fast until `retryAt`. */
export class PoolUnavailableError extends PoolError {
  override name = 'PoolUnavailableError';
  readonly code = 'POOL_UNAVAILABLE';
  constructor(
    readonly database: string,
    readonly node: string,
    readonly address: string,
    readonly retryAt: Date,
    reason: string,
  ) {
    super(
      `Cannot use "${database}/${node}" (${address}) because its circuit breaker is open after ${reason}. ` +
        `It will be tried again at ${retryAt.toISOString()}.`,
    );
  }
}

/** No replica can serve a read and `routing.fallbackToPrimary` is `false`. */
export class NoReplicaAvailableError extends PoolError {
  override name = 'NoReplicaAvailableError';
  readonly code = 'NO_REPLICA_AVAILABLE';
  constructor(
    readonly database: string,
    detail: string,
  ) {
    super(
      `Cannot route a read on database "${database}" because no replica is usable (${detail}). ` +
        `Please make sure that a replica is up, or set routing.fallbackToPrimary to true.`,
    );
  }
}

/** The first connection to a node failed after every startup attempt. */
export class PoolConnectionError extends PoolError {
  override name = 'PoolConnectionError';
  readonly code = 'POOL_CONNECTION_FAILED';
  constructor(
    readonly database: string,
    readonly node: string,
    readonly address: string,
    readonly attempts: number,
    lastError: string,
  ) {
    super(
      `Cannot connect to "${database}/${node}" at ${address} after ${attempts} attempt(s): ${lastError}. ` +
        `Please make sure that the server is running and the connection settings are right.`,
    );
  }
}

/**
 * The server has no connection slot left (53300 `max_connections`, a role's or database's
 * CONNECTION LIMIT, 53400, PgBouncer's client limit): no new connection could be opened and the
 * pool had no open one to give. Not a dead node: nothing is banned, the breaker does not count it.
 */
export class PoolServerFullError extends PoolError {
  override name = 'PoolServerFullError';
  readonly code = 'POOL_SERVER_FULL';
  constructor(
    readonly database: string,
    readonly node: string,
    readonly address: string,
    /** The server's own words (e.g. "sorry, too many clients already"). */
    readonly serverMessage: string,
    override readonly cause: unknown,
  ) {
    super(
      `Cannot open a connection to "${database}/${node}" (${address}) because the server has no connection slot left (${serverMessage}): ` +
        'its limit is max_connections (less superuser_reserved_connections), or a CONNECTION LIMIT on the role or database. ' +
        'The pool keeps serving callers from its open connections and retries opening with back-off. ' +
        'Please make sure that pools × app instances stay below the server’s limit (see the sizing advisor), or raise it.',
    );
  }
}

/** `@ReadOnly()` ran inside a transaction while `routing.readOnlyInTransaction` is `throw`. */
export class ReadOnlyInTransactionError extends PoolError {
  override name = 'ReadOnlyInTransactionError';
  constructor(readonly database: string) {
    super(
      `Cannot run a @ReadOnly() scope on a replica of "${database}" because it is inside a transaction. ` +
        `Please make sure that read-only work is called outside the transaction, or set routing.readOnlyInTransaction to "join".`,
    );
  }
}

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

/** One node a write looked at while no node answered as the primary. */
export interface PrimaryCandidate {
  readonly node: string;
  readonly address: string;
  /** What the last role check found, e.g. `in recovery` or the connection error. */
  readonly state: string;
}

/**
 * A write found no primary: the write node was lost (down, or in recovery) and no other node
 * answers as a primary yet. Thrown at once, without sending the statement; never retried by the
 * library. Retry after `retryAt`, when the next role check has run.
 */
export class PrimaryUnavailableError extends PoolError {
  override name = 'PrimaryUnavailableError';
  readonly code = 'PRIMARY_UNAVAILABLE';
  constructor(
    readonly database: string,
    readonly tried: readonly PrimaryCandidate[],
    readonly since: Date,
    readonly retryAt: Date,
    failoverTimeoutMs: number,
  ) {
    const elapsed = Date.now() - since.getTime();
    const phase =
      elapsed <= failoverTimeoutMs
        ? `the failover started ${elapsed}ms ago (failover.failoverTimeoutMs ${failoverTimeoutMs})`
        : `no primary was found within failover.failoverTimeoutMs (${failoverTimeoutMs}ms)`;
    super(
      `Cannot run a write on database "${database}" because no node answers as the primary ` +
        `(${tried.map((t) => `${t.node} ${t.address}: ${t.state}`).join('; ')}); ${phase}. ` +
        `The nodes will be checked again at ${retryAt.toISOString()}. Please make sure that a standby is promoted (or the primary restarted), then retry the write.`,
    );
  }
}

/**
 * A statement got no answer within its client-side deadline (`queryTimeoutMs`, or the bound of
 * validation, rollback or one of the library's own checks): the server or the network stopped
 * answering. The connection was destroyed, never pooled again. A connection-class error: a read
 * is retried once on another node; a write is not retried.
 */
export class PoolStatementTimeoutError extends PoolError {
  override name = 'PoolStatementTimeoutError';
  readonly code = 'POOL_STATEMENT_TIMEOUT';
  readonly connectionError = true;
  constructor(
    readonly database: string,
    readonly node: string,
    readonly address: string,
    readonly timeoutMs: number,
    statement: string,
  ) {
    const sql = statement.length > 80 ? `${statement.slice(0, 80)}…` : statement;
    super(
      `Cannot finish the statement ${JSON.stringify(sql)} on "${database}/${node}" (${address}) because the server sent no answer within ${timeoutMs}ms; ` +
        'it was cancelled on the server and its connection closed. Please make sure that the server is reachable and not overloaded, or raise queryTimeoutMs.',
    );
  }
}

/**
 * The node monitor found the node hung (its probes or statements got no answer): the statements
 * waiting on it were aborted and their connections destroyed. A connection-class error.
 */
export class NodeHungError extends PoolError {
  override name = 'NodeHungError';
  readonly code = 'NODE_HUNG';
  readonly connectionError = true;
  constructor(
    readonly database: string,
    readonly node: string,
    readonly address: string,
    readonly reason: string,
  ) {
    super(
      `Cannot finish the work on "${database}/${node}" (${address}) because the node stopped answering (${reason}); ` +
        'the statement was aborted and its connection closed. Please make sure that the server and the network to it are up; the node is used again once it answers.',
    );
  }
}

/**
 * A new connection of a load-balancer / VIP / DNS endpoint (`endpoint: true`) reached a server in
 * the other role (the read-write endpoint a standby, the read-only one the primary): it was closed
 * before anything ran on it. A connection-class error; the endpoint keeps its role, and a write
 * waits for the new primary (`failover.holdWritesMs`).
 */
export class EndpointRoleError extends PoolError {
  override name = 'EndpointRoleError';
  readonly code = 'ENDPOINT_WRONG_ROLE';
  readonly connectionError = true;
  constructor(
    readonly database: string,
    readonly node: string,
    readonly address: string,
    readonly expected: 'primary' | 'replica',
  ) {
    super(
      `Cannot use the new connection of endpoint "${database}/${node}" (${address}) because it reached a ${expected === 'primary' ? 'standby' : 'primary'} ` +
        `(pg_is_in_recovery() is ${expected === 'primary'}), not a ${expected}; it was closed unused. Please make sure that the endpoint routes to ${expected === 'primary' ? 'the primary only' : 'standbys only'} (e.g. HAProxy's check on Patroni's REST /${expected}).`,
    );
  }
}

/** A client lent by the library was used after it was given back. */
export class ClientReleasedError extends PoolError {
  override name = 'ClientReleasedError';
  readonly code = 'CLIENT_RELEASED';
  constructor(
    readonly database: string,
    readonly node: string,
    what: string,
  ) {
    super(
      `Cannot call ${what} on a client of "${database}/${node}" because it was already given back to the pool. ` +
        'Please make sure that a client is not used after release(), and that clients given by withClient() or transaction() are not released by hand.',
    );
  }
}

/** The pool was ended (application shutdown) before or while waiting for a connection. */
export class PoolEndedError extends PoolError {
  override name = 'PoolEndedError';
  readonly code = 'POOL_ENDED';
  constructor(
    readonly database: string,
    readonly node: string,
  ) {
    super(`Cannot acquire a connection from pool "${database}/${node}" because the pool was ended. Please make sure that no work starts after the application shuts down.`);
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
