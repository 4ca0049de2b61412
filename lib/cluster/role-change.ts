import { sqlState } from '../core/errors.js';

/**
 * The node a write went to is changing role: 57P03 (the server is shutting down or starting up:
 * it refused the connection, nothing ran) or 25006 (a write reached a read-only session, e.g. the
 * old primary restarted as a standby: refused, nothing ran), or a new connection of an endpoint
 * that reached a server in the other role (closed before anything ran).
 */
export function isRoleChange(err: unknown): boolean {
  const code = sqlState(err);
  return code === '57P03' || code === '25006' || (err as { code?: unknown } | null)?.code === 'ENDPOINT_WRONG_ROLE';
}
