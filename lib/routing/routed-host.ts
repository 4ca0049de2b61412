import type { PoolClient, QueryResult, QueryResultRow } from 'pg';
import type { NodePool, QueryInput } from '../pool/node-pool.js';

/**
 * What `db.routedPool` and its clients need of the database they route for (`PoolCluster` of
 * lib/core implements it): its nodes, the writer, and the routed statement and checkout.
 */
export interface RoutedHost {
  readonly name: string;
  /** The database was closed (application shutdown). */
  readonly closed: boolean;
  readonly nodes: readonly NodePool[];
  /** The configured primary (its settings: PgBouncer mode, statement deadline). */
  readonly primary: NodePool;
  /** The node writes go to now; throws when there is none. */
  readonly topology: { requireWriter(): NodePool };
  /** One statement where the current scope says: pinned transaction, replica or primary. */
  query<R extends QueryResultRow = any>(text: QueryInput, values?: unknown[]): Promise<QueryResult<R>>;
  /** A client for `fn` from the node the scope (or `readOnly`) picks, always given back. */
  withClient<T>(fn: (client: PoolClient) => Promise<T> | T, readOnly?: boolean): Promise<T>;
}
