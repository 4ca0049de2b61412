import type { PooledConnection } from './pooled-connection.js';
import { sendWithin } from './statement-deadline.js';

/** A pooled connection idle longer than `validateIdleAfterMs` (`0`: always) is checked before it is lent. */
export function needsValidation(conn: PooledConnection, now: number, validateIdleAfterMs: number): boolean {
  return conn.lastReleasedAt !== 0 && (validateIdleAfterMs === 0 || now - conn.lastReleasedAt > validateIdleAfterMs);
}

/** An empty statement bounded by `timeoutMs`: a connection that does not answer is destroyed. */
export function validate(conn: PooledConnection, timeoutMs: number, where: () => { database: string; node: string; address: string }): Promise<unknown> {
  return sendWithin(conn, '', undefined, timeoutMs, where);
}
