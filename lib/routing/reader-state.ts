import type { NodePool } from '../pool/node-pool.js';

/**
 * What routing knows about one node as a reader: every node has one, the primary too, since a
 * failover can turn any node into a reader and the write node may change.
 */
export class ReaderState {
  /** `0` when in rotation; else when the next probe runs (the ban lasts until a probe succeeds). */
  bannedUntil = 0;
  banReason = '';
  /** Replication lag in ms: `0` when the replica replayed the primary's last known position. */
  lagMs: number | undefined = undefined;
  /** WAL bytes the replica's replay is behind the primary's last known position. */
  lagBytes: number | undefined = undefined;
  replayLsn: bigint | undefined = undefined;
  lastCheckedAt = 0;
  /** Smooth weighted round-robin accumulator. */
  current = 0;
  probe: NodeJS.Timeout | undefined;
  /** An in-flight read-your-writes check of the replay position. */
  refreshing: Promise<void> | undefined;
  /** A lag figure older than this (ms) is reported as unknown. */
  staleAfterMs = Infinity;
  constructor(readonly node: NodePool) {}

  /** `lagMs` while it is fresh (measured within `staleAfterMs`), else `undefined`: an old figure is unknown, not 0. */
  get reportedLagMs(): number | undefined {
    return Date.now() - this.lastCheckedAt > this.staleAfterMs ? undefined : this.lagMs;
  }
}
