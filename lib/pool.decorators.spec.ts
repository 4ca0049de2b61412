import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { Observable, defer } from 'rxjs';
import { FakeClient } from '../test/support/fake-pg-client.js';
import { resolveOptions } from './config/resolve-options.js';
import { ClusterRegistry } from './core/cluster-registry.js';
import { PoolCluster } from './core/pool-cluster.js';
import { WITH_SESSION_METADATA } from './pool.constants.js';
import { Transactional, WithSession } from './pool.decorators.js';
import type { PoolModuleOptions } from './pool.interfaces.js';
import { PoolConfigurationError, PoolError, SessionContextInTransactionError } from './pool.exceptions.js';
import type { SessionContext } from './session/session-context.js';

// @WithSession(): what it checks when the class is defined and on each call, and the statements a
// decorated method sends through a registered database whose connections are fake pg clients
// (tracking the transaction status as PostgreSQL does). The real cluster (RLS, replicas, no
// leak to the next borrower) is test/session/with-session-decorator.e2e-spec.ts.

const SET_ONE = 'SELECT set_config($1, $2, true)';
const SET_TWO = 'SELECT set_config($1, $2, true), set_config($3, $4, true)';

function makeCluster(name: string, options: Partial<PoolModuleOptions> = {}): PoolCluster {
  const node = { host: '127.0.0.1', port: 1, user: 'u', password: 'decorator-spec-secret', database: 'd', Client: FakeClient };
  return new PoolCluster(resolveOptions({ name, primary: node, preset: 'test', env: {}, max: 1, ...options } as PoolModuleOptions));
}

/** Statements the fake clients received, without the library's own connection checks. */
const sent = (): string[] => FakeClient.instances.flatMap((c) => c.sent).filter((s) => !/^SELECT 1$|^SHOW |^SET |pg_is_in_recovery/i.test(s));

const debug: string[] = [];
Logger.overrideLogger({ log: () => undefined, warn: () => undefined, error: () => undefined, debug: (m: unknown) => void debug.push(String(m)) });

const tenant = (id: unknown): SessionContext => ({ role: 'tenant_user', settings: { 'app.tenant_id': id as string } });

describe('@WithSession()', () => {
  const registry = new ClusterRegistry();
  let main: PoolCluster;
  let other: PoolCluster;

  beforeAll(() => {
    FakeClient.reset();
    main = makeCluster('default', { session: { secret: ['app.key'] } });
    other = makeCluster('other');
    registry.add(main, 0);
    registry.add(other, 1);
    registry.onApplicationBootstrap();
  });

  // The pools keep their connections between tests: each test reads what was sent since it started.
  beforeEach(() => FakeClient.instances.forEach((c) => c.sent.splice(0)));

  afterAll(async () => {
    registry.remove(main);
    registry.remove(other);
    await Promise.all([main.close(), other.close()]);
    FakeClient.reset();
  });

  describe('when the class is defined', () => {
    it('checks a static context, naming the field, what was expected and what was given', () => {
      expect(() => WithSession({ role: 'x"; DROP TABLE users; --' })).toThrow(PoolConfigurationError);
      expect(() => WithSession({ role: 'x"; DROP TABLE users; --' })).toThrow(
        'Invalid @WithSession() context.role: expected a role name (letters, digits, _, $ and -, at most 63 characters), got "x\\"; DROP TABLE users; --".',
      );
      expect(() => WithSession({ settings: { 'bad name': 1 } })).toThrow(/^Invalid @WithSession\(\) context\.settings: expected setting names .*, got "bad name"\.$/);
      expect(() => WithSession({ settings: { 'app.x': null as never } })).toThrow('Invalid @WithSession() context.settings["app.x"]: expected a string, number or boolean, got null (null).');
      expect(() => WithSession(null as never)).toThrow('Invalid @WithSession() context: expected an object { role?, settings?, secret? }, got null (null).');
      expect(() => WithSession({})).not.toThrow();
      expect(() => WithSession(() => ({ role: 'not checked yet"' }))).not.toThrow();
    });

    it('refuses @Transactional() written above it on the same database; another database, or the right order, is fine', () => {
      const define = () => {
        class Jobs {
          @Transactional()
          @WithSession({})
          async run(): Promise<void> {}
        }
        return Jobs;
      };
      expect(define).toThrow(TypeError);
      expect(define).toThrow(
        'Cannot apply @Transactional() above @WithSession() on Jobs.run because the session context is applied when the transaction begins, so it must be set before the transaction opens. ' +
          'Please make sure that @WithSession() is written above @Transactional() (decorators apply bottom-up).',
      );
      expect(() => {
        class Jobs {
          @Transactional({ database: 'other' })
          @WithSession({})
          async run(): Promise<void> {}

          @WithSession({})
          @Transactional()
          async ok(): Promise<void> {}
        }
        return Jobs;
      }).not.toThrow();
    });

    it('refuses a property that is not a method, and keeps the method name and its metadata', () => {
      const descriptor: PropertyDescriptor = { value: 42, writable: true, configurable: true };
      expect(() => WithSession({})({ constructor: { name: 'Jobs' } } as object, 'count', descriptor)).toThrow(
        'Cannot apply @WithSession() to Jobs.count because it is not a method. Please make sure that @WithSession() decorates a method.',
      );
      expect(() => Transactional()({ constructor: { name: 'Jobs' } } as object, 'count', descriptor)).toThrow('Cannot apply @Transactional() to Jobs.count because it is not a method.');
      class Jobs {
        @WithSession({}, { database: 'other' })
        async run(): Promise<void> {}
      }
      expect(Jobs.prototype.run.name).toBe('run');
      expect(Reflect.getMetadata(WITH_SESSION_METADATA, Jobs.prototype.run)).toEqual({ database: 'other' });
    });
  });

  describe('on each call', () => {
    class Jobs {
      tenantId = 'from-this';

      @WithSession({ settings: { 'app.tenant_id': 'A', 'app.key': 'k' } })
      async fixed(): Promise<number> {
        return (await main.query('SELECT 2')).rowCount ?? 0;
      }

      @WithSession((id?: string) => (id === undefined ? undefined : tenant(id)))
      async forTenant(_id?: string): Promise<void> {
        await main.query('SELECT 2');
      }

      @WithSession(function (this: Jobs) {
        return { settings: { 'app.tenant_id': this.tenantId } };
      })
      async fromThis(): Promise<void> {
        await main.query('SELECT 2');
      }

      @WithSession((id: unknown) => tenant(id))
      plain(_id: unknown): string {
        return 'ran';
      }

      @WithSession({ settings: { 'app.tenant_id': 'A' } })
      @Transactional()
      async inTransaction(): Promise<void> {
        await main.query('INSERT 1');
        await main.query('SELECT 2');
      }

      @Transactional()
      async callsFixedInside(): Promise<number> {
        return this.fixed();
      }

      @WithSession({ settings: { 'app.tenant_id': 'O' } }, { database: 'other' })
      async onOther(): Promise<void> {
        await main.query('SELECT 2');
        await other.query('SELECT 3');
      }

      @WithSession({}, { database: 'missing' })
      async onMissing(): Promise<void> {}

      @WithSession((id: string) => tenant(id))
      later(_id: string): Observable<number> {
        return defer(() => main.query('SELECT 2').then((r) => r.rowCount ?? 0));
      }
    }
    const jobs = new Jobs();

    it('runs every statement of the method in a transaction that starts with the context', async () => {
      await expect(jobs.fixed()).resolves.toBe(1);
      await expect(jobs.fixed()).resolves.toBe(1);
      expect(sent()).toEqual(['BEGIN', SET_TWO, 'SELECT 2', 'COMMIT', 'BEGIN', SET_TWO, 'SELECT 2', 'COMMIT']);
      // Compiled once for the database, with its `session.secret`: logged once, the secret value hidden.
      expect(debug.filter((m) => m.includes('app.key'))).toEqual(['Session context on "default/primary": app.tenant_id = "A", app.key = [secret]']);
    });

    it('calls a context function with the arguments and `this`; undefined means no context', async () => {
      await jobs.forTenant('B');
      await jobs.fromThis();
      await jobs.forTenant(undefined);
      expect(sent()).toEqual(['BEGIN', SET_TWO, 'SELECT 2', 'COMMIT', 'BEGIN', SET_ONE, 'SELECT 2', 'COMMIT', 'SELECT 2']);
    });

    it('rejects the call of an async method with a bad context, throws for a plain method; nothing is sent', async () => {
      const err = await jobs.forTenant({} as never).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(PoolConfigurationError);
      expect((err as Error).message).toBe('Invalid @WithSession() context.settings["app.tenant_id"]: expected a string, number or boolean, got [object Object] (object).');
      expect(() => jobs.plain(undefined)).toThrow('Invalid @WithSession() context.settings["app.tenant_id"]: expected a string, number or boolean, got undefined (undefined).');
      expect(jobs.plain('A')).toBe('ran');
      expect(sent()).toEqual([]);
    });

    it('above @Transactional(): the context right after BEGIN, once for the whole transaction', async () => {
      await jobs.inTransaction();
      expect(sent()).toEqual(['BEGIN', SET_ONE, 'INSERT 1', 'SELECT 2', 'COMMIT']);
    });

    it('inside an open transaction of its database: SessionContextInTransactionError naming the method, the transaction rolled back', async () => {
      const err = await jobs.callsFixedInside().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(SessionContextInTransactionError);
      expect(err).toMatchObject({ code: 'SESSION_CONTEXT_IN_TRANSACTION', database: 'default' });
      expect((err as Error).message).toBe(
        'Cannot set a session context for "default" inside an open transaction because the context is applied when a transaction begins. ' +
          'Please make sure that the @WithSession() method Jobs.fixed is called outside db.transaction() and @Transactional() methods; ' +
          'to run it in a transaction of its own, write @Transactional() below @WithSession() on it.',
      );
      expect(sent()).toEqual(['BEGIN', 'ROLLBACK']);
    });

    it('applies to its own database only, and names a database that is not registered', async () => {
      await jobs.onOther();
      expect(sent()).toEqual(['SELECT 2', 'BEGIN', SET_ONE, 'SELECT 3', 'COMMIT']);
      await expect(jobs.onMissing()).rejects.toThrow(PoolError);
      await expect(jobs.onMissing()).rejects.toThrow('Cannot run @WithSession() on database "missing" because it is not registered.');
    });

    it('an Observable subscribed later runs under the context', async () => {
      const later = jobs.later('C');
      expect(sent()).toEqual([]);
      await new Promise((resolve) => setTimeout(resolve, 5));
      const count = await new Promise((resolve, reject) => later.subscribe({ next: resolve, error: reject }));
      expect(count).toBe(1);
      expect(sent()).toEqual(['BEGIN', SET_TWO, 'SELECT 2', 'COMMIT']);
    });
  });
});
