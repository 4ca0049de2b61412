// Errors of a node that cannot serve: unreachable, full, hung, or in the wrong role.
import { PoolError } from './pool-error.js';

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
