import { Inject, SetMetadata } from '@nestjs/common';
import { isObservable, Observable } from 'rxjs';
import { ClusterRegistry, findCluster } from './core/cluster-registry.js';
import { checkTransactionOptions } from './transactions/transaction-options.js';
import { DEFAULT_DATABASE, READ_ONLY_METADATA, TRANSACTIONAL_METADATA } from './pool.constants.js';
import type { ReadOnlyOptions, TransactionOptions } from './pool.interfaces.js';
import { getDatabaseToken, getPoolToken, type PoolRole } from './pool.utils.js';
import { RequestSession } from './routing/request-scope.js';
import { parseConsistencyToken, routingStorage, runReadOnly, TOKEN_FORM, type RoutingScope } from './routing/routing-context.js';

/** Injects the `DatabaseService` of a database (the default one when `name` is omitted). */
export const InjectDatabase = (name?: string): ParameterDecorator & PropertyDecorator => Inject(getDatabaseToken(name));

/** Injects a raw `pg.Pool` (`role` `primary`, default) or the replicas' `pg.Pool[]` (`replicas`). */
export const InjectPool = (name?: string, role: PoolRole = 'primary'): ParameterDecorator & PropertyDecorator =>
  Inject(getPoolToken(name, role));

type AnyFn = (...args: any[]) => any;

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
      `Cannot apply @${decorator}() to ${target.constructor?.name ?? 'object'}.${String(key)} because it is not a method. ` +
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
        let scope!: RoutingScope;
        const result: unknown = runReadOnly(() => {
          scope = routingStorage.getStore()!;
          return original.apply(this, args);
        }, minLsn);
        if (!isObservable(result)) return result;
        // An Observable runs when subscribed: in the same read-only scope.
        return new Observable((subscriber) => routingStorage.run(scope, () => result.subscribe(subscriber)));
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
    wrapMethod('Transactional', target, key, descriptor, (original) =>
      function transactional(this: unknown, ...args: unknown[]) {
        const session = routingStorage.getStore()?.session;
        const registry = session instanceof RequestSession && session.registry instanceof ClusterRegistry ? session.registry : undefined;
        return findCluster(database, registry).transaction(() => {
          const result: unknown = original.apply(this, args);
          if (isObservable(result)) {
            throw new TypeError(
              `Cannot run ${target.constructor?.name ?? 'object'}.${String(key)} in a @Transactional() transaction because it returned an Observable, ` +
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
