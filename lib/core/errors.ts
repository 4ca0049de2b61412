const CONNECTION_SQLSTATES = new Set(['57P01', '57P02', '57P03', '53300']);
const CONNECTION_NODE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'ECONNABORTED',
  'POOL_UNAVAILABLE',
]);
const CONNECTION_MESSAGES = [
  'Connection terminated',
  'connection timeout',
  'not queryable',
  'Client was closed',
  'Connection ended',
  'server closed the connection',
  'the database system is',
];

/** SQLSTATE of an error, if the server sent one. */
export function sqlState(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.length === 5 ? code : undefined;
}

/**
 * True for errors that mean the connection or the server is gone (class 08, admin shutdown
 * 57P0x, too many connections, socket errors, connect timeouts): retrying elsewhere may help and
 * the connection must not be reused. SQL errors (syntax, constraints, data) are never connection errors.
 */
export function isConnectionError(err: unknown): boolean {
  if (!err || typeof err !== 'object') return false;
  const e = err as { code?: unknown; message?: unknown; cause?: unknown; connectionError?: boolean };
  if (e.connectionError === true) return true;
  const code = typeof e.code === 'string' ? e.code : '';
  if (code.length === 5 && (code.startsWith('08') || CONNECTION_SQLSTATES.has(code))) return true;
  if (CONNECTION_NODE_CODES.has(code)) return true;
  if (code.length === 5) return false;
  const message = typeof e.message === 'string' ? e.message : '';
  if (CONNECTION_MESSAGES.some((m) => message.includes(m))) return true;
  return e.cause !== undefined && e.cause !== err ? isConnectionError(e.cause) : false;
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
const UNSENT_CODES = new Set(['PRIMARY_UNAVAILABLE', 'POOL_UNAVAILABLE', 'POOL_ACQUIRE_TIMEOUT', 'POOL_CONNECTION_FAILED', 'NAMED_STATEMENT_UNSUPPORTED']);
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
