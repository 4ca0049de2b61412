import { asksForRoleCheck, breaksConnection, classifyFailure, countsForBreaker, FailureClass, leavesRotation, nodeIsGone, retryElsewhere } from './failure-class.js';

// One classifier: every failure falls in one class, and each class has one consequence.

const err = (code: string, message = 'x', extra: object = {}) => Object.assign(new Error(message), { code }, extra);

describe('classifyFailure', () => {
  it('node-gone: socket errors, class 08, 57P01/57P02, an open breaker, the monitor’s verdict, a connect timeout', () => {
    for (const code of ['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ENOTFOUND', '08006', '08001', '57P01', '57P02', 'POOL_UNAVAILABLE', 'NODE_HUNG']) {
      expect([code, classifyFailure(err(code))]).toEqual([code, FailureClass.NodeGone]);
    }
    expect(classifyFailure(new Error('Connection terminated unexpectedly'))).toBe(FailureClass.NodeGone);
    expect(classifyFailure(err('POOL_ACQUIRE_TIMEOUT', 'Cannot acquire', { connectionError: true }))).toBe(FailureClass.NodeGone);
    expect(classifyFailure(new Error('wrapper', { cause: err('ECONNRESET') }))).toBe(FailureClass.NodeGone);
  });

  it('role-change: 57P03 and its messages; 25006 only on the write node', () => {
    expect(classifyFailure(err('57P03', 'the database system is shutting down'))).toBe(FailureClass.RoleChange);
    expect(classifyFailure(new Error('the database system is starting up'))).toBe(FailureClass.RoleChange);
    expect(classifyFailure(err('25006'), { writeNode: true })).toBe(FailureClass.RoleChange);
    expect(classifyFailure(err('25006'))).toBe(FailureClass.StatementFailed);
  });

  it('server-full: 53300, 53400, the "too many connections for role/database" family, PgBouncer’s client limit', () => {
    expect(classifyFailure(err('53300', 'sorry, too many clients already'))).toBe(FailureClass.ServerFull);
    expect(classifyFailure(err('53300', 'too many connections for role "app"'))).toBe(FailureClass.ServerFull);
    expect(classifyFailure(err('53400', 'too many connections for database "app"'))).toBe(FailureClass.ServerFull);
    expect(classifyFailure(err('08P01', 'no more connections allowed (max_client_conn)'))).toBe(FailureClass.ServerFull);
    expect(classifyFailure(err('POOL_SERVER_FULL'))).toBe(FailureClass.ServerFull);
  });

  it('slow-statement: the client-side deadline, although it carries connectionError', () => {
    expect(classifyFailure(err('POOL_STATEMENT_TIMEOUT', 'no answer', { connectionError: true }))).toBe(FailureClass.SlowStatement);
  });

  it('statement-failed: any other SQL error (its message is not read), anything unknown', () => {
    for (const code of ['42601', '23505', '57014', '40001', '22012']) expect(classifyFailure(err(code, 'Connection terminated, too many clients'))).toBe(FailureClass.StatementFailed);
    expect(classifyFailure(undefined)).toBe(FailureClass.StatementFailed);
    expect(classifyFailure('Connection terminated')).toBe(FailureClass.StatementFailed);
    expect(classifyFailure(new Error('boom'))).toBe(FailureClass.StatementFailed);
  });
});

describe('consequences of each class', () => {
  const cases = {
    gone: err('ECONNRESET'),
    role: err('57P03'),
    full: err('53300'),
    slow: err('POOL_STATEMENT_TIMEOUT'),
    failed: err('42601'),
  };
  const table = (fn: (e: unknown) => boolean) => Object.fromEntries(Object.entries(cases).map(([k, e]) => [k, fn(e)]));

  it('only a gone node counts for the breaker; gone or changing role leaves rotation and is retried elsewhere', () => {
    expect(table(nodeIsGone)).toEqual({ gone: true, role: false, full: false, slow: false, failed: false });
    expect(table(countsForBreaker)).toEqual({ gone: true, role: false, full: false, slow: false, failed: false });
    expect(table(retryElsewhere)).toEqual({ gone: true, role: true, full: false, slow: false, failed: false });
    expect(table(leavesRotation)).toEqual({ gone: true, role: true, full: false, slow: false, failed: false });
    expect(table(asksForRoleCheck)).toEqual({ gone: true, role: true, full: false, slow: false, failed: false });
    expect(asksForRoleCheck(err('25006'))).toBe(true);
  });

  it('every class but a failed statement breaks the connection', () => {
    expect(table(breaksConnection)).toEqual({ gone: true, role: true, full: true, slow: true, failed: false });
  });
});
