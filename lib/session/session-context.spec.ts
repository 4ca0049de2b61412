import { PoolConfigurationError } from '../pool.exceptions.js';
import { compileSessionContext } from './session-context.js';

describe('compileSessionContext', () => {
  it('sends names and values as parameters, settings first then the role, one statement', () => {
    const ctx = compileSessionContext({ role: 'tenant_user', settings: { 'app.tenant_id': "a'; DROP TABLE t; --", work_mem: 4096, 'app.flag': true } });
    expect(ctx.sql).toBe('SELECT set_config($1, $2, true), set_config($3, $4, true), set_config($5, $6, true), set_config($7, $8, true)');
    expect(ctx.values).toEqual(['app.tenant_id', "a'; DROP TABLE t; --", 'work_mem', '4096', 'app.flag', 'true', 'role', 'tenant_user']);
  });

  it('describes what is applied, never the value of a secret setting', () => {
    const ctx = compileSessionContext({ role: 'r', settings: { 'app.tenant_id': 'A', 'app.jwt': 'eyJ-secret' }, secret: ['app.jwt'] });
    expect(ctx.description).toBe('app.tenant_id = "A", app.jwt = [secret], role = "r"');
    const fromModule = compileSessionContext({ settings: { 'app.key': 'k-123' } }, ['app.key']);
    expect(fromModule.description).not.toContain('k-123');
  });

  it('an empty context compiles to nothing', () => {
    expect(compileSessionContext({}).sql).toBe('');
  });

  it.each([
    [{ role: 'x"; DROP TABLE users; --' }, 'session context.role'],
    [{ role: 42 }, 'session context.role'],
    [{ settings: { 'bad name': 'v' } }, 'session context.settings'],
    [{ settings: { role: 'admin' } }, 'session context.settings'],
    [{ settings: { 'a.b.c': 'v' } }, 'session context.settings'],
    [{ settings: { 'app.x': { nested: true } } }, 'session context.settings["app.x"]'],
    [{ settings: ['app.x'] }, 'session context.settings'],
  ])('refuses %j with one error naming %s', (context, field) => {
    let err: unknown;
    try {
      compileSessionContext(context as never);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PoolConfigurationError);
    expect((err as PoolConfigurationError).field).toBe(field);
  });
});
