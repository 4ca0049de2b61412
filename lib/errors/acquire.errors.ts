// Errors of taking a connection from a pool and giving it back.
import type { NodeRole } from '../pool.interfaces.js';
import { PoolError } from './pool-error.js';

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
