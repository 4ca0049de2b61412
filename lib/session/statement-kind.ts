import type { QueryConfig } from 'pg';

/**
 * What a statement sent by a query builder means for the connection it runs on: it opens,
 * commits or rolls back a transaction, needs the same session afterwards, or is ordinary work
 * that any connection of the chosen node can run.
 */
export type StatementKind = 'begin' | 'commit' | 'rollback' | 'other-transaction-control' | 'session' | 'plain';

const BEGIN = /^\s*(?:begin|start\s+transaction)\b[^;]*;?\s*$/i;
const COMMIT = /^\s*(?:commit|end)(?:\s+(?:work|transaction))?\s*;?\s*$/i;
const ROLLBACK = /^\s*(?:rollback|abort)(?:\s+(?:work|transaction))?\s*;?\s*$/i;
/** Statements that end or open a transaction in a form a savepoint cannot stand in for (COMMIT AND CHAIN, PREPARE TRANSACTION, …). */
const TRANSACTION_CONTROL = /^\s*(?:begin|start\s+transaction|commit|end|abort|prepare\s+transaction|rollback(?!\s+to\b))\b/i;
/** Statements whose effect outlives them on the session: the rest of the work must stay on that connection. */
const SESSION = /^\s*(?:set\s+(?!local\b)|reset\b|listen\b|unlisten\b|prepare\b|declare\b|discard\b|load\b|create\s+(?:temp|temporary)\b|lock\b)/i;
/** One cheap look first: only statements starting with one of these words can be anything but plain. */
const CANDIDATE = /^\s*(?:begin|start|commit|end|rollback|abort|prepare|set|reset|listen|unlisten|declare|discard|load|create\s+temp|lock)/i;

export function statementText(text: string | QueryConfig): string {
  return typeof text === 'string' ? text : text.text;
}

export function statementKind(text: string): StatementKind {
  if (!CANDIDATE.test(text)) return 'plain';
  if (BEGIN.test(text)) return 'begin';
  if (COMMIT.test(text)) return 'commit';
  if (ROLLBACK.test(text)) return 'rollback';
  if (TRANSACTION_CONTROL.test(text)) return 'other-transaction-control';
  if (SESSION.test(text)) return 'session';
  return 'plain';
}

/** A cursor, a stream or a `pg.Query`: pg runs it through its `submit()` and returns it at once. */
export function isSubmittable(value: unknown): value is { submit: (...args: unknown[]) => unknown; handleError?: (err: Error) => void } {
  return value !== null && typeof value === 'object' && typeof (value as { submit?: unknown }).submit === 'function';
}

/** BEGIN, COMMIT, ROLLBACK and their kin: statements that start or end the transaction they run in. */
export function isTransactionControl(text: string): boolean {
  const kind = statementKind(text);
  return kind !== 'plain' && kind !== 'session';
}
