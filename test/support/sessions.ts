import { adminQuery, pgNodeNames, type PgNodeName } from './cluster.js';
import { waitFor } from './wait.js';

// Server-side sessions by application_name (pg_stat_activity, read as the superuser), the one
// check every e2e test uses for "no client leaked" and "the pool holds exactly N connections".
// By default a count covers every connection the library opens for the application: its pools'
// (`application_name` exactly) and the ones it opens beside them, named with a ':' suffix
// (`<app>:monitor` for the node monitor, `<app>:roles` for the role checks, any `<app>:*`).

export interface SessionCountOptions {
  /** Count only `client backend` rows (leaves out parallel workers that carry the same name). */
  clientBackendsOnly?: boolean;
  /** Count only the pools' own connections (`application_name` exactly), not the `<app>:*` ones beside them. */
  poolOnly?: boolean;
}

/** The WHERE clause matching the sessions of `$1` (see SessionCountOptions). */
export function applicationNameFilter(options: SessionCountOptions = {}): string {
  const name = options.poolOnly ? 'application_name = $1' : "(application_name = $1 OR starts_with(application_name, $1 || ':'))";
  return options.clientBackendsOnly ? `${name} AND backend_type = 'client backend'` : name;
}

/** Sessions of this application on one PostgreSQL node. */
export async function sessionCount(node: PgNodeName, applicationName: string, options: SessionCountOptions = {}): Promise<number> {
  const rows = await adminQuery<{ n: number }>(node, `SELECT count(*)::int AS n FROM pg_stat_activity WHERE ${applicationNameFilter(options)}`, [applicationName]);
  return rows[0]!.n;
}

/** Sessions of this application on each PostgreSQL node. */
export async function sessionCounts(applicationName: string, options: SessionCountOptions = {}): Promise<Record<PgNodeName, number>> {
  const counts = await Promise.all(pgNodeNames.map(async (node) => [node, await sessionCount(node, applicationName, options)] as const));
  return Object.fromEntries(counts) as Record<PgNodeName, number>;
}

/** `application_name` of every session of this application on one node (its pools' and the `:`-suffixed ones), sorted. */
export async function sessionNames(node: PgNodeName, applicationName: string): Promise<string[]> {
  const rows = await adminQuery<{ name: string }>(node, `SELECT application_name AS name FROM pg_stat_activity WHERE ${applicationNameFilter()} ORDER BY 1`, [applicationName]);
  return rows.map((r) => r.name);
}

/**
 * Waits, node after node (each within `timeoutMs`), until no session of `applicationName` (nor of
 * its `:`-suffixed companions) is left on `nodes`; the error names the sessions still there.
 */
export async function waitForNoSessions(
  applicationName: string,
  { nodes = pgNodeNames, timeoutMs, everyMs }: { nodes?: readonly PgNodeName[]; timeoutMs: number; everyMs: number },
): Promise<void> {
  for (const node of nodes) {
    try {
      await waitFor(`no ${applicationName} session left on ${node}`, async () => (await sessionCount(node, applicationName)) === 0, timeoutMs, everyMs);
    } catch (err) {
      const left = await sessionNames(node, applicationName);
      throw new Error(`${(err as Error).message}; left: ${left.join(', ') || 'none'}`, { cause: err });
    }
  }
}

/** What every suite checks once its apps are closed: no session of `applicationName` is left (the server may take a moment to drop them; 5 s at most). */
export function expectNoSessionsLeft(applicationName: string, nodes: readonly PgNodeName[] = pgNodeNames): Promise<void> {
  return waitForNoSessions(applicationName, { nodes, timeoutMs: 5000, everyMs: 50 });
}

export interface SessionRow {
  pid: number;
  application_name: string;
  state: string | null;
  backend_start: Date;
  xact_start: Date | null;
  backend_xid: string | null;
}

/**
 * Server-side sessions of `applicationName` on one PostgreSQL node (empty list while it is down):
 * every connection the library opened for it, its `<app>:*` companions included, unless `poolOnly`.
 */
export async function sessions(node: PgNodeName, applicationName: string, options: Pick<SessionCountOptions, 'poolOnly'> = {}): Promise<SessionRow[]> {
  return adminQuery<SessionRow>(
    node,
    `SELECT pid, application_name, state, backend_start, xact_start, backend_xid::text AS backend_xid FROM pg_stat_activity WHERE ${applicationNameFilter(options)} AND pid <> pg_backend_pid()`,
    [applicationName],
    { applicationName: 'chaos-admin' },
  );
}

/** The pools' own sessions of `applicationName` on one node (`application_name` exactly). */
export function poolSessions(node: PgNodeName, applicationName: string): Promise<SessionRow[]> {
  return sessions(node, applicationName, { poolOnly: true });
}

/**
 * Terminates every backend of `applicationName` (its pools' sessions, `application_name` exactly)
 * on `node`; returns the pids. With `onlyIdle`, only sessions idle outside a transaction (pooled
 * connections), each re-checked in its own statement: pg_stat_activity is a snapshot per
 * statement, and a pid found idle may have begun a transaction since (terminating that one would
 * fail a transaction in flight, which is not what this asks for).
 */
export async function terminateSessionPids(node: PgNodeName, applicationName: string, onlyIdle = false): Promise<number[]> {
  const admin = { applicationName: 'chaos-admin' };
  if (!onlyIdle) {
    const rows = await adminQuery<{ pid: number }>(
      node,
      // MATERIALIZED: the filter runs before pg_terminate_backend(), never interleaved with it.
      `WITH targets AS MATERIALIZED (SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid())
       SELECT pid FROM targets WHERE pg_terminate_backend(pid)`,
      [applicationName],
      admin,
    );
    return rows.map((r) => r.pid);
  }
  const idle = await adminQuery<{ pid: number }>(node, "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND state = 'idle'", [applicationName], admin);
  const terminated: number[] = [];
  for (const { pid } of idle) {
    const rows = await adminQuery<{ done: boolean }>(
      node,
      "SELECT pg_terminate_backend(pid) AS done FROM pg_stat_activity WHERE pid = $1 AND state = 'idle'",
      [pid],
      admin,
    );
    if (rows[0]?.done === true) terminated.push(pid);
  }
  return terminated;
}

/** `terminateSessionPids`, counted. */
export async function terminateSessions(node: PgNodeName, applicationName: string, onlyIdle = false): Promise<number> {
  return (await terminateSessionPids(node, applicationName, onlyIdle)).length;
}
