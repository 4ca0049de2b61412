export const DASHBOARD_DISABLED_MESSAGE =
  'Cannot show the pool dashboard because it is off with the production preset. ' +
  'Please make sure that metrics.dashboard is true if you want it in production (and protect it with metrics.guards).';
