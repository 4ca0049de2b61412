import { adminQuery, pgNodeNames, type PgNodeName } from './cluster.js';
import { waitFor } from './wait.js';

// Server-side sessions by application_name (pg_stat_activity, read as the superuser), the one
// check every e2e test uses for "no client leaked" and "the pool holds exactly N connections".

export interface SessionCountOptions {
  /** Count only `client backend` rows (leaves out parallel workers that carry the same name). */
  clientBackendsOnly?: boolean;
}

/** Sessions with this application_name on one PostgreSQL node. */
export async function sessionCount(node: PgNodeName, applicationName: string, options: SessionCountOptions = {}): Promise<number> {
  const backendFilter = options.clientBackendsOnly ? " AND backend_type = 'client backend'" : '';
  const rows = await adminQuery<{ n: number }>(node, `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1${backendFilter}`, [
    applicationName,
  ]);
  return rows[0]!.n;
}

/** Sessions with this application_name on each PostgreSQL node. */
export async function sessionCounts(applicationName: string, options: SessionCountOptions = {}): Promise<Record<PgNodeName, number>> {
  const counts = await Promise.all(pgNodeNames.map(async (node) => [node, await sessionCount(node, applicationName, options)] as const));
  return Object.fromEntries(counts) as Record<PgNodeName, number>;
}

/** Waits, node after node (each within `timeoutMs`), until no session of `applicationName` is left on `nodes`. */
export async function waitForNoSessions(
  applicationName: string,
  { nodes = pgNodeNames, timeoutMs, everyMs }: { nodes?: readonly PgNodeName[]; timeoutMs: number; everyMs: number },
): Promise<void> {
  for (const node of nodes) {
    await waitFor(`no ${applicationName} session left on ${node}`, async () => (await sessionCount(node, applicationName)) === 0, timeoutMs, everyMs);
  }
}
