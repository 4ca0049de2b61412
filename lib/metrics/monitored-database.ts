import type { NodePool } from '../pool/node-pool.js';
import type { PoolEvent } from '../pool.events.js';

/** What a background monitor of lib/metrics needs from the database it watches; `PoolCluster` is one. */
export interface MonitoredDatabase {
  readonly name: string;
  readonly nodes: readonly NodePool[];
  readonly closed: boolean;
  readonly emitting: boolean;
  emit(event: PoolEvent): void;
}
