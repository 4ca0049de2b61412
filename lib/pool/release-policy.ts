import type { RemoveReason } from '../pool.events.js';
import { isReadOnlyViolation } from '../errors/sql-state.js';
import { breaksConnection } from '../errors/failure-class.js';
import type { PooledConnection } from './pooled-connection.js';

/** What to do with a connection given back. */
export type ReleaseAction =
  | { readonly kind: 'pool' }
  | { readonly kind: 'retire'; readonly reason: RemoveReason }
  | { readonly kind: 'destroy'; readonly reason: RemoveReason; readonly connectionError: boolean }
  | { readonly kind: 'rollback' }
  | { readonly kind: 'check-demoted' };

const POOL: ReleaseAction = { kind: 'pool' };
const ROLLBACK: ReleaseAction = { kind: 'rollback' };
const CHECK_DEMOTED: ReleaseAction = { kind: 'check-demoted' };
const DESTROY_FAILED: ReleaseAction = { kind: 'destroy', reason: 'error', connectionError: true };
const DESTROY_BROKEN: ReleaseAction = { kind: 'destroy', reason: 'error', connectionError: false };
const RETIRE_EVICTED: ReleaseAction = { kind: 'retire', reason: 'evicted' };
const RETIRE_LIFETIME: ReleaseAction = { kind: 'retire', reason: 'lifetime' };
const RETIRE_MAX_USES: ReleaseAction = { kind: 'retire', reason: 'max-uses' };

export interface ReleaseContext {
  readonly generation: number;
  readonly maxUses: number;
  readonly primary: boolean;
  readonly now: number;
}

/**
 * The release rules, in order: a connection that failed (the error came from it, and is
 * connection-class) or broke is destroyed — an error the caller's own code threw never destroys
 * it; 25006 from this connection on the primary asks whether the server was demoted; an open or
 * aborted transaction is rolled back first; a connection of an evicted generation, past its
 * lifetime or at `maxUses` is retired; anything else is pooled again.
 */
export function releaseAction(conn: PooledConnection, err: unknown, ctx: ReleaseContext): ReleaseAction {
  if (conn.broken) return conn.brokenBy !== undefined && breaksConnection(conn.brokenBy) ? DESTROY_FAILED : DESTROY_BROKEN;
  if (err !== undefined && err !== null && conn.raised(err)) {
    if (breaksConnection(err)) return DESTROY_FAILED;
    if (ctx.primary && isReadOnlyViolation(err)) return CHECK_DEMOTED;
  }
  const tx = conn.client.getTransactionStatus?.() ?? null;
  if (tx === 'T' || tx === 'E') return ROLLBACK;
  return retireOrPool(conn, ctx);
}

/** After a clean statement or a rollback: retire for generation, lifetime or uses, else pool. */
export function retireOrPool(conn: PooledConnection, ctx: ReleaseContext): ReleaseAction {
  if (conn.generation !== ctx.generation) return RETIRE_EVICTED;
  if (conn.expiresAt !== 0 && ctx.now >= conn.expiresAt) return RETIRE_LIFETIME;
  if (conn.uses >= ctx.maxUses) return RETIRE_MAX_USES;
  return POOL;
}
