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
        `(${formatPoolState(state)}). Please make sure that clients are released, or raise max / acquireTimeoutMs.`,
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
        ? `the failover started ${elapsed}ms ago (failover.timeoutMs ${failoverTimeoutMs})`
        : `no primary was found within failover.timeoutMs (${failoverTimeoutMs}ms)`;
    super(
      `Cannot run a write on database "${database}" because no node answers as the primary ` +
        `(${tried.map((t) => `${t.node} ${t.address}: ${t.state}`).join('; ')}); ${phase}. ` +
        `The nodes will be checked again at ${retryAt.toISOString()}. Please make sure that a standby is promoted (or the primary restarted), then retry the write.`,
    );
  }
}
