import type { PoolClient } from 'pg';
import type { NodePool } from '../pool/node-pool.js';
import { isConnectionError, sqlState } from '../errors/sql-state.js';
import { TransactionRolledBackError } from '../pool.exceptions.js';
import type { TransactionOptions } from '../pool.interfaces.js';
import { markWrite, routingStorage, runInTransaction } from '../routing/routing-context.js';
import { PinnedTransaction, type TransactionHandle } from './pinned-transaction.js';
import { beginStatement, checkJoinable, checkTransactionOptions } from './transaction-options.js';

/** How long a ROLLBACK may take before the connection is given up as hung. */
const ROLLBACK_TIMEOUT_MS = 5000;

/** What the runner needs from the database that owns it. */
export interface TransactionHost {
  readonly name: string;
  /**
   * Runs `begin` on the node writes go to now, looked up for every new transaction (rejects with
   * `PrimaryUnavailableError` while none is known; may wait for a role change first).
   */
  beginOnWriter(begin: (node: NodePool) => Promise<PoolClient>): Promise<{ node: NodePool; client: PoolClient }>;
  /** A statement or checkout on the write node failed: lets role discovery check the topology. */
  writeFailed(err: unknown): void;
  readonly options: { readonly routing: { readonly consistency: string } };
}

/**
 * Runs transactions of one database on a pinned primary client, with an explicit lifecycle:
 * open → committing → ended. A transaction the server did not commit never resolves; once it
 * ended, nothing that still holds it reaches the connection; nested calls join it (a joined call
 * that throws makes it rollback-only) or, with `requiresNew`, run on a client of their own.
 */
export class TransactionRunner {
  constructor(private readonly host: TransactionHost) {}

  async run<T>(fn: (tx: TransactionHandle) => Promise<T> | T, options: TransactionOptions = {}): Promise<T> {
    checkTransactionOptions(options);
    const database = this.host.name;
    const scope = routingStorage.getStore();
    // Only this runner pins transactions in a scope.
    const existing = scope?.tx?.get(database) as PinnedTransaction | undefined;
    if (existing !== undefined && options.propagation !== 'requiresNew') return this.#join(existing, fn, options);
    const statement = beginStatement(options);
    const { node, client: raw } = await this.host.beginOnWriter((writer) => writer.begin(statement));
    const tx = new PinnedTransaction(database, node, raw, options);
    let releaseError: unknown;
    try {
      let result: T;
      try {
        result = await runInTransaction(tx, () => fn(tx.handle));
      } catch (err) {
        tx.ended('rolled back');
        releaseError = (await this.#rollback(tx)) ?? tx.checkout.releaseError(err);
        throw err;
      }
      const outcome = await this.#commit(tx);
      releaseError = outcome.releaseError;
      if (outcome.written && !tx.readOnly && this.host.options.routing.consistency === 'read-your-writes') markWrite(scope, database);
      if (outcome.error !== undefined) throw outcome.error;
      return result;
    } finally {
      if (releaseError !== undefined) this.host.writeFailed(releaseError);
      node.release(raw, releaseError);
    }
  }

  /** A nested call inside `tx`: same client, same options; a throw makes `tx` rollback-only. */
  async #join<T>(tx: PinnedTransaction, fn: (tx: TransactionHandle) => Promise<T> | T, options: TransactionOptions): Promise<T> {
    const refused = tx.refusal();
    if (refused !== undefined) throw refused;
    checkJoinable(tx.database, tx.options, options);
    try {
      return await fn(tx.handle);
    } catch (err) {
      if (tx.state === 'open') tx.rollbackOnly ??= { cause: err };
      throw err;
    }
  }

  /**
   * Commits `tx` when the server can: not when it is aborted (a statement failed and the error
   * was caught) or rollback-only (a joined call threw), and not when COMMIT is answered with ROLLBACK.
   */
  async #commit(tx: PinnedTransaction): Promise<{ error?: unknown; releaseError?: unknown; written: boolean }> {
    const raw = tx.raw as typeof tx.raw & { getTransactionStatus?: () => string | null };
    const aborted = typeof raw.getTransactionStatus === 'function' && raw.getTransactionStatus() === 'E';
    if (tx.rollbackOnly !== undefined || aborted) {
      tx.ended('rolled back');
      const releaseError = tx.checkout.failed ? tx.checkout.releaseError(undefined) : await this.#rollback(tx);
      const error =
        tx.rollbackOnly !== undefined
          ? new TransactionRolledBackError(tx.database, `a joined inner transaction threw (${describe(tx.rollbackOnly.cause)})`, tx.rollbackOnly.cause)
          : this.#rolledBack(tx);
      return { error, releaseError, written: false };
    }
    tx.committing();
    try {
      const res = await tx.node.run(tx.raw, 'COMMIT', undefined, false);
      if (res.command === 'ROLLBACK') {
        tx.ended('rolled back');
        return { error: this.#rolledBack(tx), written: false };
      }
      tx.ended('committed');
      return { written: true };
    } catch (err) {
      // A connection lost during COMMIT leaves the outcome unknown: it may have committed.
      const unknown = isConnectionError(err);
      tx.ended(unknown ? 'ended' : 'rolled back');
      return { error: err, releaseError: err, written: unknown };
    }
  }

  #rolledBack(tx: PinnedTransaction): TransactionRolledBackError {
    const cause = tx.firstError;
    const reason = cause === undefined ? 'the server answered COMMIT with ROLLBACK (the transaction was aborted)' : `a statement in it failed (${describe(cause)})`;
    return new TransactionRolledBackError(tx.database, reason, cause);
  }

  /** Sends ROLLBACK (bounded); returns the error to release the client with, if it failed. */
  async #rollback(tx: PinnedTransaction): Promise<unknown> {
    if (tx.checkout.failed) return tx.checkout.releaseError(undefined);
    let timer: NodeJS.Timeout | undefined;
    const hung = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        reject(Object.assign(new Error(`ROLLBACK on "${tx.database}/${tx.node.name}" did not answer within ${ROLLBACK_TIMEOUT_MS}ms`), { connectionError: true }));
      }, ROLLBACK_TIMEOUT_MS);
      timer.unref();
    });
    try {
      await Promise.race([tx.rollback(), hung]);
      return undefined;
    } catch (err) {
      return err;
    } finally {
      clearTimeout(timer);
    }
  }
}

function describe(err: unknown): string {
  const message = err instanceof Error || (err !== null && typeof err === 'object' && 'message' in err) ? String((err as Error).message) : String(err);
  const code = sqlState(err);
  return code === undefined ? message : `${code}: ${message}`;
}
