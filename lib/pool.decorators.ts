import { Inject, SetMetadata } from '@nestjs/common';
import { isObservable, Observable } from 'rxjs';
import { ClusterRegistry, findCluster } from './core/cluster-registry.js';
import type { PoolCluster } from './core/pool-cluster.js';
import { checkTransactionOptions } from './transactions/transaction-options.js';
import { DEFAULT_DATABASE, READ_ONLY_METADATA, TRANSACTIONAL_METADATA, WITH_SESSION_METADATA } from './pool.constants.js';
import type { ReadOnlyOptions, SessionContextOf, SessionMethodDecorator, TransactionOptions, WithSessionOptions } from './pool.interfaces.js';
import { getDatabaseToken, getPoolToken, type PoolRole } from './pool.utils.js';
import { RequestSession } from './routing/request-scope.js';
import { parseConsistencyToken, routingStorage, runReadOnly, runWithSession, TOKEN_FORM, type RoutingScope } from './routing/routing-context.js';
import { compileSessionContext, type CompiledSessionContext, type SessionContext } from './session/session-context.js';

/** Injects the `DatabaseService` of a database (the default one when `name` is omitted). */
export const InjectDatabase = (name?: string): ParameterDecorator & PropertyDecorator => Inject(getDatabaseToken(name));

/** Injects a raw `pg.Pool` (`role` `primary`, default) or the replicas' `pg.Pool[]` (`replicas`). */
export const InjectPool = (name?: string, role: PoolRole = 'primary'): ParameterDecorator & PropertyDecorator =>
  Inject(getPoolToken(name, role));

type AnyFn = (...args: any[]) => any;

const AsyncFunction = (async () => undefined).constructor;

const methodName = (target: object, key: string | symbol): string => `${target.constructor?.name ?? 'object'}.${String(key)}`;

function wrapMethod(
  decorator: string,
  target: object,
  key: string | symbol,
  descriptor: PropertyDescriptor,
  wrap: (original: AnyFn) => AnyFn,
): PropertyDescriptor {
  const original = descriptor.value as unknown;
  if (typeof original !== 'function') {
    throw new TypeError(
      `Cannot apply @${decorator}() to ${methodName(target, key)} because it is not a method. ` +
        `Please make sure that @${decorator}() decorates a method.`,
    );
  }
  const wrapped = wrap(original as AnyFn);
  for (const metaKey of Reflect.getOwnMetadataKeys(original)) {
    Reflect.defineMetadata(metaKey, Reflect.getOwnMetadata(metaKey, original), wrapped);
  }
  Object.defineProperty(wrapped, 'name', { value: (original as AnyFn).name, configurable: true });
  descriptor.value = wrapped;
  return descriptor;
}

/**
 * The database `name` for a decorated call: from the registry of the request's application when
 * the call runs in a request, else as `findCluster` says.
 */
function clusterOf(name: string, decorator: string): PoolCluster {
  const session = routingStorage.getStore()?.session;
  const registry = session instanceof RequestSession && session.registry instanceof ClusterRegistry ? session.registry : undefined;
  return findCluster(name, registry, decorator);
}

/**
 * Runs `method` in the scope `run` opens and returns its result; an Observable runs when it is
 * subscribed, so it is given back subscribing in that same scope.
 */
function keepingScope(run: (method: () => unknown) => unknown, method: () => unknown): unknown {
  let scope: RoutingScope | undefined;
  const result = run(() => {
    scope = routingStorage.getStore();
    return method();
  });
  if (!isObservable(result) || scope === undefined) return result;
  const inScope = scope;
  return new Observable((subscriber) => routingStorage.run(inScope, () => result.subscribe(subscriber)));
}

/**
 * Sends every query made by this method (and everything it calls, across awaits) to a replica.
 * Works on controller handlers and on any provider method. Inside a transaction the transaction's
 * client is used (see `routing.readOnlyInTransaction`). `minLsn` requires replicas that replayed
 * that WAL position.
 */
export function ReadOnly(options: ReadOnlyOptions = {}): MethodDecorator {
  let minLsn: Map<string, bigint> | undefined;
  if (options.minLsn !== undefined) {
    minLsn = typeof options.minLsn === 'string' ? parseConsistencyToken(options.minLsn, DEFAULT_DATABASE) : undefined;
    if (minLsn === undefined) {
      throw new TypeError(`Invalid @ReadOnly() option \`minLsn\`: expected ${TOKEN_FORM}, got ${JSON.stringify(options.minLsn)} (${typeof options.minLsn}).`);
    }
  }
  const setMeta = SetMetadata(READ_ONLY_METADATA, { ...options });
  return (target, key, descriptor) => {
    wrapMethod('ReadOnly', target, key, descriptor, (original) =>
      function readOnly(this: unknown, ...args: unknown[]) {
        return keepingScope(
          (method) => runReadOnly(method, minLsn),
          () => original.apply(this, args),
        );
      },
    );
    setMeta(target, key, descriptor);
    return descriptor;
  };
}

/**
 * Runs the method in a transaction on one primary client of `database` (default database when
 * omitted). Nested `@Transactional()` calls and every query below join it unless
 * `propagation: 'requiresNew'`.
 */
export function Transactional(options: TransactionOptions & { database?: string } = {}): MethodDecorator {
  const { database = DEFAULT_DATABASE, ...txOptions } = options;
  checkTransactionOptions(txOptions, '@Transactional() option');
  const setMeta = SetMetadata(TRANSACTIONAL_METADATA, { database, ...txOptions });
  return (target, key, descriptor) => {
    const method: unknown = descriptor.value;
    const below = typeof method === 'function' ? (Reflect.getMetadata(WITH_SESSION_METADATA, method) as { database: string } | undefined) : undefined;
    if (below?.database === database) {
      throw new TypeError(
        `Cannot apply @Transactional() above @WithSession() on ${methodName(target, key)} because the session context is applied when the transaction begins, ` +
          'so it must be set before the transaction opens. Please make sure that @WithSession() is written above @Transactional() (decorators apply bottom-up).',
      );
    }
    wrapMethod('Transactional', target, key, descriptor, (original) =>
      function transactional(this: unknown, ...args: unknown[]) {
        return clusterOf(database, 'Transactional').transaction(() => {
          const result: unknown = original.apply(this, args);
          if (isObservable(result)) {
            throw new TypeError(
              `Cannot run ${methodName(target, key)} in a @Transactional() transaction because it returned an Observable, ` +
                'which would run after COMMIT. Please make sure that the method returns a Promise (for example with lastValueFrom()).',
            );
          }
          return result;
        }, txOptions);
      },
    );
    setMeta(target, key, descriptor);
    return descriptor;
  };
}

const CONTEXT_FIELD = '@WithSession() context';

/**
 * Runs the method with a session context for `database` (default database when omitted), as
 * `db.withSession(context, fn)` does: every statement below it (across awaits, on the primary and
 * replicas, in transactions, through `withClient` and `routedPool`) runs with `role` and `settings`
 * applied by `set_config(…, true)`. `context` is a context, checked here, or a function called with
 * the method's `this` and arguments on each call, whose result is checked then (`undefined`: no
 * context). Write it above `@Transactional()`: the context is applied right after BEGIN. A bad
 * context, an unregistered database, or a call inside an open transaction of the database
 * (`SessionContextInTransactionError`) rejects the call of an `async` method, else throws.
 */
export function WithSession(context: SessionContext, options?: WithSessionOptions): MethodDecorator;
export function WithSession<A extends unknown[], T = any>(context: SessionContextOf<A, T>, options?: WithSessionOptions): SessionMethodDecorator<A>;
export function WithSession(context: SessionContext | SessionContextOf, options: WithSessionOptions = {}): MethodDecorator {
  const { database = DEFAULT_DATABASE } = options;
  // A static context is checked once, now; it is compiled again per database with its `session.secret`.
  if (typeof context !== 'function') compileSessionContext(context, [], CONTEXT_FIELD);
  const compiled = new WeakMap<PoolCluster, CompiledSessionContext>();
  const contextFor = (cluster: PoolCluster, self: unknown, args: unknown[]): CompiledSessionContext | undefined => {
    const secret = cluster.options.session.secret;
    if (typeof context === 'function') {
      const given = context.apply(self, args);
      return given === undefined ? undefined : compileSessionContext(given, secret, CONTEXT_FIELD);
    }
    let ctx = compiled.get(cluster);
    if (ctx === undefined) compiled.set(cluster, (ctx = compileSessionContext(context, secret, CONTEXT_FIELD)));
    return ctx;
  };
  const setMeta = SetMetadata(WITH_SESSION_METADATA, { database });
  return (target, key, descriptor) => {
    const method = methodName(target, key);
    wrapMethod('WithSession', target, key, descriptor, (original) => {
      const rejects = original instanceof AsyncFunction;
      return function withSession(this: unknown, ...args: unknown[]) {
        try {
          const cluster = clusterOf(database, 'WithSession');
          const ctx = contextFor(cluster, this, args);
          return keepingScope(
            (run) => runWithSession(cluster.name, ctx, run, method),
            () => original.apply(this, args),
          );
        } catch (err) {
          // An async method's own errors never throw here: this is the context's error, given as the method gives its own.
          if (rejects) return Promise.reject(err);
          throw err;
        }
      };
    });
    setMeta(target, key, descriptor);
    return descriptor;
  };
}
