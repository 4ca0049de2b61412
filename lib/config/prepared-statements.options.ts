import type { PreparedStatementOptions } from '../pool.interfaces.js';
import { field, resolveSection } from './option.js';
import { PREPARED_STATEMENT_OPTIONS } from './schema.sections.js';

/** What every connection of a node does with repeated parameterized statements. */
export interface ResolvedPreparedStatements {
  /** False when turned off, or in PgBouncer mode without `pgbouncerProtocol`. */
  readonly enabled: boolean;
  readonly threshold: number;
  readonly cacheSize: number;
  /** PgBouncer ≥ 1.21 tracks the statements: no `DEALLOCATE` on eviction (PgBouncer bounds the server side). */
  readonly viaPgBouncer: boolean;
  /** PgBouncer ≥ 1.21 with `max_prepared_statements`: named statements work behind it. */
  readonly pgbouncerProtocol: boolean;
}

export const PREPARED_STATEMENT_DEFAULTS = {
  enabled: PREPARED_STATEMENT_OPTIONS.enabled.default,
  threshold: PREPARED_STATEMENT_OPTIONS.threshold.default,
  cacheSize: PREPARED_STATEMENT_OPTIONS.cacheSize.default,
} as const;

/** Validates `preparedStatements`; with `pgbouncer: true` it is off unless `pgbouncerProtocol` says PgBouncer handles it. */
export function resolvePreparedStatements(raw: PreparedStatementOptions | undefined, pgbouncer: boolean): ResolvedPreparedStatements {
  const given = resolveSection(PREPARED_STATEMENT_OPTIONS, raw, field('preparedStatements'));
  return {
    enabled: given.enabled && (!pgbouncer || given.pgbouncerProtocol),
    threshold: given.threshold,
    cacheSize: given.cacheSize,
    viaPgBouncer: pgbouncer,
    pgbouncerProtocol: pgbouncer && given.pgbouncerProtocol,
  };
}
