import { classifyFailure, FailureClass } from '../errors/failure-class.js';

/**
 * The node a write went to is changing role: the failure classifier's role change on the write
 * node (57P03 "shutting down / starting up": the connection was refused, nothing ran; 25006: a
 * write reached a read-only session, e.g. the old primary restarted as a standby, refused), or a
 * new connection of an endpoint that reached a server in the other role (closed before anything ran).
 */
export function isRoleChange(err: unknown): boolean {
  return classifyFailure(err, { writeNode: true }) === FailureClass.RoleChange || (err as { code?: unknown } | null)?.code === 'ENDPOINT_WRONG_ROLE';
}
