import type { PoolModuleRootOptions } from 'nestjs-pg-pools';
import { adminQuery, clusterConfig, clusterCtl, nodeOptions, replicaOptions, type PgNodeName } from './cluster.js';
import { waitFor } from './wait.js';

// Set-up of the failover e2e tests (test/failover-*.e2e-spec.ts), which promote replicas of the
// shared cluster: the initial topology again, with a fresh table of theirs.

/** Rebuilds the initial topology and creates `table` (id serial, v int) for the app user; waits until `replica` has it, if given. */
export async function rebuildWithTable(table: string, replica?: PgNodeName): Promise<void> {
  await clusterCtl('rebuild');
  await adminQuery('primary', `DROP TABLE IF EXISTS ${table}`);
  await adminQuery('primary', `CREATE TABLE ${table} (id serial PRIMARY KEY, v int NOT NULL)`);
  await adminQuery('primary', `GRANT ALL ON ${table}, ${table}_id_seq TO ${clusterConfig.user}`);
  if (replica) await waitFor(`the table on ${replica}`, async () => (await adminQuery(replica, `SELECT to_regclass('${table}') AS t`))[0]?.t);
}

/** The failover suites' pool options: the primary and both replicas, the test preset, one connect attempt, and `extra`. */
export function failoverOptions(applicationName: string, extra: Partial<PoolModuleRootOptions> = {}): PoolModuleRootOptions {
  return { primary: nodeOptions('primary'), replicas: replicaOptions(), applicationName, preset: 'test', retryAttempts: 1, ...extra };
}
