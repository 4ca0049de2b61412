import { breaksConnection } from './failure-class.js';

/** SQLSTATE of an error, if the server sent one. */
export function sqlState(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.length === 5 ? code : undefined;
}

/**
 * True for errors that mean the connection or the server is gone, changing role or full, or that
 * the statement passed its client-side deadline (every class of `classifyFailure` but a failed
 * statement): the connection must not be reused and the statement's outcome is unknown. SQL
 * errors (syntax, constraints, data) are never connection errors.
 */
export function isConnectionError(err: unknown): boolean {
  return breaksConnection(err);
}

/** The server was shut down or restarted: every idle connection of that pool is stale. */
export function isServerRestartError(err: unknown): boolean {
  const code = sqlState(err);
  return code === '57P01' || code === '57P02' || code === '57P03' || (code !== undefined && code.startsWith('08'));
}

/**
 * 57P01: the server terminated the session (`pg_terminate_backend`, a fast shutdown). The
 * statement it interrupted was rolled back, or never started when the session was idle.
 */
export function isSessionTerminated(err: unknown): boolean {
  return sqlState(err) === '57P01';
}

/** 25006: a write reached a read-only session (a replica, or a demoted primary). */
export function isReadOnlyViolation(err: unknown): boolean {
  return sqlState(err) === '25006';
}

/** Library errors raised before a statement was handed to a connection. */
const UNSENT_CODES = new Set(['PRIMARY_UNAVAILABLE', 'POOL_UNAVAILABLE', 'POOL_ACQUIRE_TIMEOUT', 'POOL_CONNECTION_FAILED', 'POOL_SERVER_FULL', 'NAMED_STATEMENT_UNSUPPORTED']);
/** Failures that only opening a connection can produce: no statement was sent on it. */
const CONNECT_ONLY_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', '53300', '57P03', '28P01', '28000', '3D000']);

/**
 * True when the error proves the statement never reached a server: refused by an open breaker,
 * an acquire timeout, or a failure to connect (refused, unknown host, too many connections, the
 * server starting up, authentication). A broken socket mid-statement is not: its outcome is unknown.
 */
export function neverSent(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && (UNSENT_CODES.has(code) || CONNECT_ONLY_CODES.has(code));
}
