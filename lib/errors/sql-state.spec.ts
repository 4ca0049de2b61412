import { isConnectionError, isReadOnlyViolation, isServerRestartError, isSessionTerminated, sqlState } from './sql-state.js';

// Classification of driver errors: what destroys a connection, what evicts a pool, what is a plain SQL error.

const sqlError = (code: string, message = 'x') => Object.assign(new Error(message), { code });

describe('error classification', () => {
  it('treats class 08, 57P01-03 and 53300, socket codes and driver messages as connection errors', () => {
    for (const code of ['08006', '08001', '57P01', '57P02', '57P03', '53300']) expect(isConnectionError(sqlError(code))).toBe(true);
    for (const code of ['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'POOL_UNAVAILABLE']) expect(isConnectionError(sqlError(code))).toBe(true);
    expect(isConnectionError(new Error('Connection terminated unexpectedly'))).toBe(true);
    expect(isConnectionError(new Error('Client has encountered a connection error and is not queryable'))).toBe(true);
    expect(isConnectionError(new Error('wrapper', { cause: sqlError('ECONNRESET') }))).toBe(true);
  });

  it('never treats SQL errors (syntax, constraints, data, read-only, timeouts) as connection errors', () => {
    for (const code of ['42601', '23505', '22012', '42P01', '25006', '57014', '40001', '40P01']) {
      expect(isConnectionError(sqlError(code, 'Connection terminated'))).toBe(false);
    }
    expect(isConnectionError(undefined)).toBe(false);
    expect(isConnectionError('Connection terminated')).toBe(false);
  });

  it('evicts a whole pool only for server shutdowns / restarts (57P0x, class 08)', () => {
    expect(['57P01', '57P02', '57P03', '08006'].every((c) => isServerRestartError(sqlError(c)))).toBe(true);
    expect(isServerRestartError(sqlError('53300'))).toBe(false);
    expect(isServerRestartError(new Error('Connection terminated unexpectedly'))).toBe(false);
  });

  it('recognises a terminated session (57P01) and a read-only violation (25006)', () => {
    expect(isSessionTerminated(sqlError('57P01'))).toBe(true);
    expect(isSessionTerminated(sqlError('57P02'))).toBe(false);
    expect(isReadOnlyViolation(sqlError('25006'))).toBe(true);
    expect(sqlState(sqlError('ECONNRESET'))).toBeUndefined();
  });
});
