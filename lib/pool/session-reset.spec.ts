import { touchesSession } from './session-reset.js';

describe('touchesSession', () => {
  it.each([
    'SET search_path = tenant_b',
    '  set role pg_read_all_data',
    "SELECT set_config('app.tenant_id', $1, false)",
    'RESET ALL',
    'LISTEN jobs',
    'PREPARE p AS SELECT 1',
    'DECLARE c CURSOR WITH HOLD FOR SELECT 1',
    'DISCARD PLANS',
    "LOAD 'auto_explain'",
    'DEALLOCATE p',
    'CREATE TEMP TABLE t (id int)',
    'create temporary table t (id int)',
    'SELECT * INTO TEMP t FROM items',
    'CREATE TABLE pg_temp.t (id int)',
    'SELECT pg_advisory_lock(1)',
    'SELECT pg_try_advisory_lock_shared(1)',
    'SET SESSION AUTHORIZATION other',
    'SELECT 1; SET statement_timeout = 0',
    '/* tagged */ SET work_mem = 1024',
    '-- note\nSET work_mem = 1024',
    'SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY',
  ])('flags %j', (text) => {
    expect(touchesSession(text)).toBe(true);
    // The second verdict comes from the memo of recent texts: the same.
    expect(touchesSession(text)).toBe(true);
  });

  it.each([
    'SELECT 1',
    'UPDATE items SET name = $1 WHERE id = $2',
    'INSERT INTO settings (name) VALUES ($1)',
    'SET LOCAL statement_timeout = 100',
    'SET TRANSACTION ISOLATION LEVEL SERIALIZABLE',
    'SET CONSTRAINTS ALL DEFERRED',
    'SELECT pg_advisory_xact_lock(1)',
    'BEGIN',
    'SELECT preset FROM listeners',
  ])('leaves %j alone', (text) => {
    expect(touchesSession(text)).toBe(false);
    expect(touchesSession(text)).toBe(false);
  });

  it('gives the same verdicts once its memo of recent texts filled up and started over', () => {
    for (let i = 0; i < 1200; i++) expect(touchesSession(`SELECT ${i} FROM t WHERE id = $1`)).toBe(false);
    for (let i = 0; i < 1200; i++) expect(touchesSession(`SET work_mem = ${64 + i}`)).toBe(true);
    expect(touchesSession('SELECT 5 FROM t WHERE id = $1')).toBe(false);
    expect(touchesSession(`SELECT '${'x'.repeat(5000)}'; SET role = x`)).toBe(true);
  });

  it('flags a statement whose text it cannot read', () => {
    expect(touchesSession(undefined)).toBe(true);
  });
});
