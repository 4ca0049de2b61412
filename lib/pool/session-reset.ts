export type { ResetOnRelease } from '../config/reset-modes.js';

/** Names of the automatic prepared-statement cache: they survive a reset. */
export const CACHED_STATEMENT_PREFIX = '__pgp_';

/**
 * Statements that can leave state in the session (a setting, the role, LISTEN, a temporary
 * object, a session advisory lock, a SQL prepared statement, a held cursor, a loaded library),
 * at the start of the text or after a `;`, or the functions that do it anywhere. `SET LOCAL`,
 * `SET TRANSACTION` and `SET CONSTRAINTS` end with their transaction. False positives only cost a reset.
 */
const SESSION_STATEMENT =
  /(?:^|;)\s*(?:(?:--[^\n]*\n|\/\*[\s\S]*?\*\/)\s*)*(?:set\s+(?!local\b|transaction\b|constraints\b)|reset\b|listen\b|prepare\b|declare\b|discard\b|load\b|deallocate\b)|set_config|advisory_lock|\btemp(?:orary)?\b|pg_temp|session\s+authorization/i;

/** Verdicts of `touchesSession` for recent texts (an application sends few distinct ones, over and over). */
const verdicts = new Map<string, boolean>();
const VERDICTS_MAX = 512;
/** Longer texts are tested each time rather than kept. */
const VERDICT_TEXT_MAX = 4096;

/** True when `text` may change session state (cheap; false positives only cost a reset). */
export function touchesSession(text: unknown): boolean {
  if (typeof text !== 'string') return true;
  const known = verdicts.get(text);
  if (known !== undefined) return known;
  const touches = SESSION_STATEMENT.test(text);
  if (text.length <= VERDICT_TEXT_MAX) {
    if (verdicts.size >= VERDICTS_MAX) verdicts.clear();
    verdicts.set(text, touches);
  }
  return touches;
}

/**
 * `DISCARD ALL` step by step, in one round trip, keeping the automatic statement cache and the
 * statements the driver prepared by `name` (pg remembers them per connection): held cursors, the
 * role, every setting (back to the connection's startup values: the library's statement_timeout,
 * TimeZone, read-only on replicas, application_name), LISTEN, session advisory locks, temporary
 * objects, sequence state and statements prepared with SQL `PREPARE`.
 */
export const RESET_SESSION_SQL = [
  'CLOSE ALL',
  'SET SESSION AUTHORIZATION DEFAULT',
  'RESET ALL',
  'UNLISTEN *',
  'SELECT pg_advisory_unlock_all()',
  'DISCARD TEMP',
  'DISCARD SEQUENCES',
  "DO $pgp$DECLARE s text; BEGIN FOR s IN SELECT name FROM pg_prepared_statements WHERE from_sql AND " +
    `left(name, ${CACHED_STATEMENT_PREFIX.length}) <> '${CACHED_STATEMENT_PREFIX}' LOOP EXECUTE format('DEALLOCATE %I', s); END LOOP; END$pgp$`,
].join('; ');
