// Errors of routing a read or a write to a node.
import { PoolError } from './pool-error.js';

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
