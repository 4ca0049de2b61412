import { checkBool, checkInt, checkObject } from '../metrics/metrics.options.js';
import type { PreparedStatementOptions } from '../pool.interfaces.js';

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

const KEYS = new Set(['enabled', 'threshold', 'cacheSize', 'pgbouncerProtocol']);

export const PREPARED_STATEMENT_DEFAULTS = { enabled: true, threshold: 3, cacheSize: 100 } as const;

/** Validates `preparedStatements`; with `pgbouncer: true` it is off unless `pgbouncerProtocol` says PgBouncer handles it. */
export function resolvePreparedStatements(raw: PreparedStatementOptions | undefined, pgbouncer: boolean): ResolvedPreparedStatements {
  const input = checkObject('preparedStatements', raw, KEYS);
  const enabled = checkBool('preparedStatements.enabled', input.enabled, PREPARED_STATEMENT_DEFAULTS.enabled);
  const pgbouncerProtocol = checkBool('preparedStatements.pgbouncerProtocol', input.pgbouncerProtocol, false);
  return {
    enabled: enabled && (!pgbouncer || pgbouncerProtocol),
    threshold: checkInt('preparedStatements.threshold', input.threshold, PREPARED_STATEMENT_DEFAULTS.threshold, 1),
    cacheSize: checkInt('preparedStatements.cacheSize', input.cacheSize, PREPARED_STATEMENT_DEFAULTS.cacheSize, 1),
    viaPgBouncer: pgbouncer,
    pgbouncerProtocol: pgbouncer && pgbouncerProtocol,
  };
}
