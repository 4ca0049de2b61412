import { AsyncLocalStorage } from 'node:async_hooks';
import { SessionContextInTransactionError } from '../pool.exceptions.js';
import { ExplicitContexts, type CompiledSessionContext, type SessionContexts } from '../session/session-context.js';
import type { PoolClient, QueryConfig, QueryResult, QueryResultRow } from 'pg';

/** What routing needs of a transaction pinned in a scope (`PinnedTransaction` of lib/transactions implements it). */
export interface ScopedTransaction {
  readonly database: string;
  readonly state: 'open' | 'committing' | 'ended';
  /** Opened with `readOnly: true`. */
  readonly readOnly: boolean;
  /** `readOnlyInTransaction: 'warn'` logged once for this transaction. */
  warned: boolean;
  readonly handle: { readonly client: PoolClient };
  /** `undefined` while open; else the error a statement gets. */
  refusal(): Error | undefined;
  query<R extends QueryResultRow = any>(text: string | QueryConfig, values?: unknown[]): Promise<QueryResult<R>>;
}

/** State shared by every scope of one request or job: what it wrote, what it must see. */
export interface RoutingSession {
  /** Per database: how many writes started or settled in this session (any change means "fetch the WAL position again"). */
  writes: Map<string, number> | undefined;
  /** Per database: the primary WAL position fetched once `writes` had reached `version`. */
  seen: Map<string, { version: number; lsn: bigint }> | undefined;
  /** Per database: minimum WAL position carried in from a consistency token or `@ReadOnly({ minLsn })`. */
  minLsn: Map<string, bigint> | undefined;
  /** Tag of the request that opened the session (so stacked interceptors open one session). */
  owner: unknown;
}

export interface RoutingScope {
  readonly readOnly: boolean;
  readonly session: RoutingSession;
  readonly tx: ReadonlyMap<string, ScopedTransaction> | undefined;
  /** The session contexts (role, settings) statements of this scope run with, per database. */
  readonly contexts?: SessionContexts;
}

export const routingStorage = new AsyncLocalStorage<RoutingScope>();

export function newSession(owner?: unknown, minLsn?: ReadonlyMap<string, bigint>): RoutingSession {
  return { writes: undefined, seen: undefined, minLsn: minLsn === undefined ? undefined : new Map(minLsn), owner };
}

/** Raises the session's carried minimum WAL positions to `minLsn` (never lowers them). */
export function raiseMinLsn(session: RoutingSession, minLsn: ReadonlyMap<string, bigint>): void {
  for (const [database, lsn] of minLsn) {
    const current = session.minLsn?.get(database);
    if (current === undefined || lsn > current) (session.minLsn ??= new Map()).set(database, lsn);
  }
}

/**
 * The scope a `@ReadOnly()` call runs in: read-only, same session (raising its carried
 * `minLsn`), same pinned transactions. `undefined` when the current scope already is that.
 */
function readOnlyScope(minLsn?: ReadonlyMap<string, bigint>): RoutingScope | undefined {
  const parent = routingStorage.getStore();
  const session = parent?.session ?? newSession();
  if (minLsn !== undefined) raiseMinLsn(session, minLsn);
  if (parent?.readOnly === true) return undefined;
  return { readOnly: true, session, tx: parent?.tx, contexts: parent?.contexts };
}

/**
 * Runs `fn` in a new read-write scope with its own session (writes tracked for read-your-writes),
 * the scope an HTTP request gets from the interceptor; inside an existing scope, `fn` just joins it.
 */
export function runInScope<T>(fn: () => T): T {
  return routingStorage.getStore() !== undefined ? fn() : routingStorage.run({ readOnly: false, session: newSession(), tx: undefined }, fn);
}

/** Runs `fn` in a read-only scope that keeps the current session and transaction (what `@ReadOnly()` does). */
export function runReadOnly<T>(fn: () => T, minLsn?: ReadonlyMap<string, bigint>): T {
  const scope = readOnlyScope(minLsn);
  return scope === undefined ? fn() : routingStorage.run(scope, fn);
}

/**
 * Runs `fn` in a scope where `tx` is pinned for its database. The scope is not read-only: a
 * transaction opened under `@ReadOnly()` writes on the primary; only a `@ReadOnly()` called
 * inside the transaction counts as read-only work in it.
 */
export function runInTransaction<T>(tx: ScopedTransaction, fn: () => T): T {
  const parent = routingStorage.getStore();
  const map = new Map(parent?.tx ?? []);
  map.set(tx.database, tx);
  return routingStorage.run({ readOnly: false, session: parent?.session ?? newSession(), tx: map, contexts: parent?.contexts }, fn);
}

/**
 * Runs `fn` in the current scope (or a new one) with `context` applied to every statement on
 * `database` below it, over the contexts of the parent scope (what `db.withSession()` and
 * `@WithSession()` do; `undefined` runs without one). Throws `SessionContextInTransactionError`
 * inside an open transaction of `database`, whose context was applied at its BEGIN; `method` names
 * the `@WithSession()` method in that error.
 */
export function runWithSession<T>(database: string, context: CompiledSessionContext | undefined, fn: () => T, method?: string): T {
  const parent = routingStorage.getStore();
  if (parent?.tx?.has(database) === true) throw new SessionContextInTransactionError(database, method);
  const contexts = new ExplicitContexts(parent?.contexts, database, context);
  return routingStorage.run({ readOnly: parent?.readOnly ?? false, session: parent?.session ?? newSession(), tx: parent?.tx, contexts }, fn);
}

export function markWrite(scope: RoutingScope | undefined, database: string): void {
  if (scope === undefined) return;
  const writes = (scope.session.writes ??= new Map());
  writes.set(database, (writes.get(database) ?? 0) + 1);
}

const LSN = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/;

/** `0/16B3748` → bigint; `undefined` when not a WAL position. */
export function parseLsn(text: string | null | undefined): bigint | undefined {
  if (!text) return undefined;
  const m = LSN.exec(text.trim());
  if (!m) return undefined;
  return (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`);
}

export function formatLsn(lsn: bigint): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}

/** The expected form of a consistency token, for error messages. */
export const TOKEN_FORM = 'a WAL position such as "0/16B3748" (default database) or "<database>:0/16B3748", several joined by ","';

/**
 * A consistency token: a WAL position for the default database (`0/16B3748`) or for a named one
 * (`analytics:0/16B3748`), several joined by `,`. `undefined` when any part is malformed.
 */
export function parseConsistencyToken(text: string, defaultDatabase: string): Map<string, bigint> | undefined {
  const result = new Map<string, bigint>();
  for (const part of text.split(',')) {
    const entry = part.trim();
    const colon = entry.lastIndexOf(':');
    const database = colon === -1 ? defaultDatabase : entry.slice(0, colon).trim();
    const lsn = parseLsn(colon === -1 ? entry : entry.slice(colon + 1));
    if (lsn === undefined || database === '') return undefined;
    const current = result.get(database);
    if (current === undefined || lsn > current) result.set(database, lsn);
  }
  return result.size === 0 ? undefined : result;
}

/** The token `parseConsistencyToken` reads back: the bare position for the default database. */
export function formatConsistencyToken(database: string, lsn: bigint, defaultDatabase: string): string {
  return database === defaultDatabase ? formatLsn(lsn) : `${database}:${formatLsn(lsn)}`;
}
