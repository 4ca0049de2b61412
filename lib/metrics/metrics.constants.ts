/** The resolved `metrics` options of one `PoolModule` import. */
export const METRICS_CONFIG = Symbol('nestjs-pg-pools:metrics-config');
/** The `metrics` options that won the election: those of the first `PoolModule` import. */
export const METRICS_OWNER = Symbol('nestjs-pg-pools:metrics-owner');

export const DASHBOARD_DISABLED_MESSAGE =
  'Cannot show the pool dashboard because it is off with the production preset. ' +
  'Please make sure that metrics.dashboard is true if you want it in production (and protect it with metrics.guards).';
