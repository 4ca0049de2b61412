import { isSubmittable, isTransactionControl, statementKind } from './statement-kind.js';

describe('statementKind', () => {
  it.each([
    ['begin', 'begin'],
    ['BEGIN', 'begin'],
    ['  begin isolation level serializable;', 'begin'],
    ['start transaction isolation level repeatable read read only', 'begin'],
    ['START TRANSACTION', 'begin'],
    ['commit', 'commit'],
    ['COMMIT WORK;', 'commit'],
    ['end transaction', 'commit'],
    ['rollback', 'rollback'],
    ['ROLLBACK TRANSACTION', 'rollback'],
    ['abort', 'rollback'],
  ])('%j is %s', (text, kind) => {
    expect(statementKind(text)).toBe(kind);
  });

  it.each(['commit and chain', 'rollback and chain', "prepare transaction 'x'", 'begin; insert into t values (1); commit', 'end; begin'])(
    '%j is transaction control a savepoint cannot stand in for',
    (text) => {
      expect(statementKind(text)).toBe('other-transaction-control');
    },
  );

  it.each(['set search_path = app', 'SET SESSION statement_timeout = 100', 'reset all', 'listen jobs', 'unlisten *', 'prepare q as select 1', 'declare c cursor for select 1', 'discard all', 'create temp table x (id int)', 'CREATE TEMPORARY TABLE x (id int)'])(
    '%j needs its session afterwards',
    (text) => {
      expect(statementKind(text)).toBe('session');
    },
  );

  it.each([
    'select 1',
    'SELECT * FROM "begin"',
    'insert into t values (1)',
    'update t set a = 1',
    'delete from t',
    'with x as (select 1) select * from x',
    'savepoint sp1',
    'release savepoint sp1',
    'rollback to savepoint sp1',
    'ROLLBACK TO sp1',
    'set local statement_timeout = 100',
    'create table t (id int)',
    'do $$ begin perform 1; end $$',
    'endpoint_check()',
  ])('%j is plain', (text) => {
    expect(statementKind(text)).toBe('plain');
  });

  it('isTransactionControl covers BEGIN, COMMIT, ROLLBACK and their kin, not savepoints or session commands', () => {
    expect(['begin', 'commit', 'rollback', 'commit and chain'].map(isTransactionControl)).toEqual([true, true, true, true]);
    expect(['savepoint a', 'rollback to savepoint a', 'set search_path = x', 'select 1'].map(isTransactionControl)).toEqual([false, false, false, false]);
  });
});

describe('isSubmittable', () => {
  it('is true for objects with a submit() method only', () => {
    expect(isSubmittable({ submit: () => undefined })).toBe(true);
    expect(isSubmittable({ text: 'select 1' })).toBe(false);
    expect(isSubmittable('select 1')).toBe(false);
    expect(isSubmittable(null)).toBe(false);
  });
});
