import { AsyncLocalStorage } from 'node:async_hooks';
import type { PoolClient } from 'pg';

/** A transaction pinned to one primary client, visible to everything called inside it. */
export interface PinnedTransaction {
  readonly database: string;
  readonly client: PoolClient;
  readonly readOnly: boolean;
  warned: boolean;
}

/** State shared by every scope of one request or job: what it wrote, what it must see. */
export interface RoutingSession {
  /** Databases written to since their write position was last read. */
  dirty: Set<string> | undefined;
  /** Per database: WAL position (as a number) a replica must have replayed to serve this session. */
  writeLsn: Map<string, bigint> | undefined;
  /** Minimum WAL position carried in from a consistency token (applies to every database). */
  minLsn: bigint | undefined;
  /** Tag of the request that opened the session (so stacked interceptors open one session). */
  owner: unknown;
}

export interface RoutingScope {
  readonly readOnly: boolean;
  readonly session: RoutingSession;
  readonly tx: ReadonlyMap<string, PinnedTransaction> | undefined;
}

export const routingStorage = new AsyncLocalStorage<RoutingScope>();

export function newSession(owner?: unknown, minLsn?: bigint): RoutingSession {
  return { dirty: undefined, writeLsn: undefined, minLsn, owner };
}

/** Runs `fn` in a read-only scope that keeps the current session and transaction. */
export function runReadOnly<T>(fn: () => T, minLsn?: bigint): T {
  const parent = routingStorage.getStore();
  const session = parent?.session ?? newSession();
  if (minLsn !== undefined && (session.minLsn === undefined || minLsn > session.minLsn)) session.minLsn = minLsn;
  if (parent?.readOnly === true && minLsn === undefined) return fn();
  return routingStorage.run({ readOnly: true, session, tx: parent?.tx }, fn);
}

/** Runs `fn` in a scope where `tx` is pinned for its database. */
export function runInTransaction<T>(tx: PinnedTransaction, fn: () => T): T {
  const parent = routingStorage.getStore();
  const map = new Map(parent?.tx ?? []);
  map.set(tx.database, tx);
  return routingStorage.run({ readOnly: parent?.readOnly ?? false, session: parent?.session ?? newSession(), tx: map }, fn);
}

export function markWrite(scope: RoutingScope | undefined, database: string): void {
  if (scope === undefined) return;
  const session = scope.session;
  (session.dirty ??= new Set()).add(database);
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
