import type { TransactionOptions } from '../pool.interfaces.js';
import { TransactionOptionsConflictError } from '../pool.exceptions.js';

const ISOLATION: Record<NonNullable<TransactionOptions['isolationLevel']>, string> = {
  'read uncommitted': ' ISOLATION LEVEL READ UNCOMMITTED',
  'read committed': ' ISOLATION LEVEL READ COMMITTED',
  'repeatable read': ' ISOLATION LEVEL REPEATABLE READ',
  serializable: ' ISOLATION LEVEL SERIALIZABLE',
};
const PROPAGATIONS: ReadonlyArray<NonNullable<TransactionOptions['propagation']>> = ['join', 'requiresNew'];
const JOINED_OPTIONS = ['isolationLevel', 'readOnly', 'deferrable'] as const;

/** Throws one `TypeError` naming the first invalid transaction option. */
export function checkTransactionOptions(options: TransactionOptions, label = 'transaction option'): void {
  const given = (value: unknown) => `${JSON.stringify(value)} (${value === null ? 'null' : typeof value})`;
  if (options === null || typeof options !== 'object') {
    throw new TypeError(`Invalid ${label}s: expected an object, got ${given(options)}.`);
  }
  const { isolationLevel, propagation } = options;
  if (isolationLevel !== undefined && !Object.hasOwn(ISOLATION, isolationLevel)) {
    throw new TypeError(`Invalid ${label} \`isolationLevel\`: expected one of ${Object.keys(ISOLATION).map((l) => `"${l}"`).join(', ')}, got ${given(isolationLevel)}.`);
  }
  if (propagation !== undefined && !PROPAGATIONS.includes(propagation)) {
    throw new TypeError(`Invalid ${label} \`propagation\`: expected "join" or "requiresNew", got ${given(propagation)}.`);
  }
  for (const flag of ['readOnly', 'deferrable'] as const) {
    if (options[flag] !== undefined && typeof options[flag] !== 'boolean') {
      throw new TypeError(`Invalid ${label} \`${flag}\`: expected true or false, got ${given(options[flag])}.`);
    }
  }
}

/** The `BEGIN` statement that opens a transaction with `options`. */
export function beginStatement(options: TransactionOptions): string {
  let begin = 'BEGIN';
  if (options.isolationLevel !== undefined) begin += ISOLATION[options.isolationLevel];
  if (options.readOnly) begin += ' READ ONLY';
  if (options.deferrable) begin += ' DEFERRABLE';
  return begin;
}

/**
 * A nested call that joins the transaction opened with `current` may leave an option out, or ask
 * for the value the transaction has; anything else is a `TransactionOptionsConflictError`.
 */
export function checkJoinable(database: string, current: TransactionOptions, requested: TransactionOptions): void {
  for (const option of JOINED_OPTIONS) {
    const wanted = requested[option];
    if (wanted === undefined) continue;
    const has = option === 'isolationLevel' ? current[option] : (current[option] ?? false);
    if (wanted !== has) throw new TransactionOptionsConflictError(database, option, wanted, current[option]);
  }
}
