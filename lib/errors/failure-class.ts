/**
 * What a failure says, read once in one place (HikariCP's `ProxyConnection.checkException`).
 * Every error a statement, a connect or a probe meets falls in exactly one class; each class has
 * one consequence for the connection, the node and the caller (docs/failover.md, "Failure handling"):
 *
 * | class              | connection                         | node                                   | caller                          |
 * | ------------------ | ---------------------------------- | -------------------------------------- | ------------------------------- |
 * | `node-gone`        | destroyed (a restart evicts all)   | replica banned, breaker counts, role check on the write node | read retried once elsewhere; write gets the error |
 * | `role-change`      | destroyed (25006: checked)         | role check; replica out of rotation until a probe answers   | read retried once elsewhere; write gets the error |
 * | `server-full`      | never opened                       | opening backs off; no ban, no breaker                        | served from idle connections, else the error      |
 * | `slow-statement`   | cancelled on the server, destroyed | nothing (the monitor judges the node)  | gets the timeout, no retry      |
 * | `statement-failed` | kept                               | nothing                                | gets the error                  |
 */
export const FailureClass = {
  /** Reset, refused, EOF, unknown host, connect timeout, 57P01 / 57P02, class 08, an open breaker, the node monitor's hung verdict. */
  NodeGone: 'node-gone',
  /** 57P03 (shutting down, starting up, in recovery), or 25006 (read-only) from the write node. */
  RoleChange: 'role-change',
  /** No connection slot left: 53300 (`max_connections`, a role's or database's CONNECTION LIMIT), 53400, PgBouncer's client limit. */
  ServerFull: 'server-full',
  /** The library's client-side statement deadline passed while the node may still answer its probes. */
  SlowStatement: 'slow-statement',
  /** Any other error: the statement failed, the connection and the node are fine. */
  StatementFailed: 'statement-failed',
} as const;

export type FailureClass = (typeof FailureClass)[keyof typeof FailureClass];

/** Where the failure was met: 25006 from the write node is a role change, elsewhere a failed statement. */
export interface FailureContext {
  readonly writeNode?: boolean;
}

const GONE_NODE_CODES = new Set([
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
  'NODE_HUNG',
]);
const GONE_MESSAGES = ['Connection terminated', 'connection timeout', 'not queryable', 'Client was closed', 'Connection ended', 'server closed the connection'];
const ROLE_MESSAGES = ['the database system is shutting down', 'the database system is starting up', 'the database system is in recovery mode', 'the database system is not yet accepting connections', 'the database system is not accepting connections'];
const FULL_MESSAGES = ['too many clients', 'too many connections', 'remaining connection slots are reserved', 'no more connections allowed'];

interface ErrorShape {
  code?: unknown;
  message?: unknown;
  cause?: unknown;
  connectionError?: unknown;
}

function own(err: ErrorShape, context: FailureContext): FailureClass | undefined {
  const code = typeof err.code === 'string' ? err.code : '';
  if (GONE_NODE_CODES.has(code)) return FailureClass.NodeGone;
  if (code.length === 5) {
    // A SQLSTATE: the server said what happened.
    if (code === '53300' || code === '53400') return FailureClass.ServerFull;
    if (code === '57P03') return FailureClass.RoleChange;
    if (code === '25006') return context.writeNode === true ? FailureClass.RoleChange : FailureClass.StatementFailed;
    if (code === '57P01' || code === '57P02' || code.startsWith('08')) return code === '08P01' && fullMessage(err) ? FailureClass.ServerFull : FailureClass.NodeGone;
    return FailureClass.StatementFailed;
  }
  if (code === 'POOL_STATEMENT_TIMEOUT') return FailureClass.SlowStatement;
  if (code === 'POOL_SERVER_FULL') return FailureClass.ServerFull;
  if (err.connectionError === true) return FailureClass.NodeGone;
  const message = typeof err.message === 'string' ? err.message : '';
  if (fullMessage(err)) return FailureClass.ServerFull;
  if (ROLE_MESSAGES.some((m) => message.includes(m))) return FailureClass.RoleChange;
  if (GONE_MESSAGES.some((m) => message.includes(m))) return FailureClass.NodeGone;
  return undefined;
}

/** PgBouncer's "no more connections allowed" comes as 08P01; a server without a code says it in words. */
function fullMessage(err: ErrorShape): boolean {
  const message = typeof err.message === 'string' ? err.message : '';
  return FULL_MESSAGES.some((m) => message.includes(m));
}

/**
 * The class of `err` (its own code and message first, then its `cause`, up to three levels).
 * Anything that is not an object, or says nothing the table knows, is a failed statement.
 */
export function classifyFailure(err: unknown, context: FailureContext = {}): FailureClass {
  let e = err;
  for (let depth = 0; depth < 4 && e !== null && typeof e === 'object'; depth++) {
    const found = own(e as ErrorShape, context);
    if (found !== undefined) return found;
    const cause = (e as ErrorShape).cause;
    if (cause === e) break;
    e = cause;
  }
  return FailureClass.StatementFailed;
}

/** The node itself failed (gone or hung): it leaves service — a replica is banned, its breaker counts. */
export function nodeIsGone(err: unknown): boolean {
  return classifyFailure(err) === FailureClass.NodeGone;
}

/**
 * Another node may serve the statement: the node is gone or changing role (a slow statement is
 * not retried — it would be as slow elsewhere; a full server is not a broken one).
 */
export function retryElsewhere(err: unknown): boolean {
  const cls = classifyFailure(err);
  return cls === FailureClass.NodeGone || cls === FailureClass.RoleChange;
}

/** A replica that failed this way leaves read rotation until a probe answers: gone, or changing role. */
export function leavesRotation(err: unknown): boolean {
  return retryElsewhere(err);
}

/** The write node failed this way: ask every node its role now (gone, or changing role — 25006 included). */
export function asksForRoleCheck(err: unknown): boolean {
  const cls = classifyFailure(err, { writeNode: true });
  return cls === FailureClass.NodeGone || cls === FailureClass.RoleChange;
}

/** Counts towards the node's circuit breaker: only a node that cannot be reached. */
export function countsForBreaker(err: unknown): boolean {
  return classifyFailure(err) === FailureClass.NodeGone;
}

/**
 * The connection the error came from must not be reused, and the outcome of a statement that met
 * it is unknown: every class but a failed statement (the public `isConnectionError`).
 */
export function breaksConnection(err: unknown): boolean {
  return classifyFailure(err) !== FailureClass.StatementFailed;
}
