import type { ResolvedOptions } from '../config/resolve-options.js';
import type { NodePool } from '../pool/node-pool.js';
import { leavesRotation } from '../errors/failure-class.js';
import { parseLsn } from '../routing/routing-context.js';
import { recordEnd, WalHistory } from '../routing/wal-history.js';
import type { ReaderState } from '../routing/reader-state.js';
import type { Topology } from './topology.js';

const LAG_SQL =
  'SELECT pg_last_wal_replay_lsn()::text AS replay, pg_is_in_recovery() AS recovering, ' +
  'EXTRACT(EPOCH FROM (clock_timestamp() - pg_last_xact_replay_timestamp())) * 1000 AS since_ms';
/** The flushed position, the most a replica can have received. */
const PRIMARY_FLUSH_LSN_SQL = 'SELECT pg_current_wal_flush_lsn()::text AS lsn';

/** What the lag monitor needs of the cluster it measures. */
export interface LagHost {
  /** The write node the primary's WAL position is read from. */
  readonly primary: NodePool;
  /** The readers in rotation now. */
  readonly replicas: readonly ReaderState[];
  readonly nodes: readonly NodePool[];
  readonly closed: boolean;
  readonly topology: Pick<Topology, 'lostSince' | 'check'>;
  /** Takes a reader out of rotation after a failure that means it is gone. */
  ban(r: ReaderState, err: unknown): void;
}

/** Samples the primary's WAL position and every replica's replay position and lag, every `lagCheckIntervalMs`. */
export class LagMonitor {
  readonly #wal: WalHistory;
  #timer: NodeJS.Timeout | undefined;
  #running = false;
  /** Bumped when the history restarts: a primary sample taken before is not recorded. */
  #generation = 0;
  /** The deadline of a lag check or probe: a node that does not answer within it has its connection destroyed. */
  readonly timeoutMs: number;

  constructor(
    private readonly host: LagHost,
    private readonly routing: ResolvedOptions['routing'],
    private readonly lazy: boolean,
  ) {
    this.#wal = new WalHistory(Math.max(60_000, routing.maxReplicationLagMs * 3, routing.lagCheckIntervalMs * 10));
    this.timeoutMs = Math.max(1000, Math.min(5000, routing.lagCheckIntervalMs * 2));
  }

  start(nodeCount: number): void {
    if (nodeCount < 2 || this.#timer !== undefined || this.host.closed) return;
    this.#timer = setInterval(() => void this.check(), this.routing.lagCheckIntervalMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  /** Measures every replica's replay position and lag against the primary. */
  async check(): Promise<void> {
    const host = this.host;
    if (this.#running || host.closed || host.replicas.length === 0) return;
    if (this.lazy && host.nodes.every((n) => n.state().total === 0)) return;
    this.#running = true;
    try {
      await this.samplePrimary();
      await Promise.all(
        host.replicas
          .filter((r) => r.bannedUntil === 0)
          .map((r) =>
            this.measure(r).catch((err: unknown) => {
              if (leavesRotation(err)) host.ban(r, err);
            }),
          ),
      );
    } finally {
      this.#running = false;
    }
  }

  /**
   * The write node changed, was lost or came back: lag is measured against the primary there is
   * now, from its first sample on. Until then every replica's lag is unknown (not the outage).
   */
  restart(): void {
    this.#generation++;
    this.#wal.reset();
    for (const r of this.host.replicas) {
      r.lagMs = undefined;
      r.lagBytes = undefined;
    }
  }

  /** Records the primary's WAL position; a primary that cannot answer leaves the history as it is. */
  async samplePrimary(): Promise<void> {
    const generation = this.#generation;
    try {
      const res = await this.host.primary.systemQuery<{ lsn: string }>(PRIMARY_FLUSH_LSN_SQL, undefined, this.timeoutMs);
      const lsn = parseLsn(res.rows[0]?.lsn);
      if (lsn !== undefined && generation === this.#generation && this.host.topology.lostSince === 0) this.#wal.record(recordEnd(lsn), Date.now());
    } catch {
      // The primary being down is reported by health checks; replicas are still measured.
    }
  }

  async measure(r: ReaderState): Promise<void> {
    const res = await r.node.systemQuery<{ replay: string | null; since_ms: string | number | null }>(LAG_SQL, undefined, this.timeoutMs);
    const row = res.rows[0];
    const replay = parseLsn(row?.replay);
    const now = Date.now();
    r.lastCheckedAt = now;
    if ((row as { recovering?: boolean } | undefined)?.recovering === false) void this.host.topology.check('a replica answered as a primary');
    if (replay === undefined) {
      r.replayLsn = undefined;
      r.lagMs = undefined;
      r.lagBytes = undefined;
      return;
    }
    if (r.replayLsn === undefined || replay > r.replayLsn || r.replayLsn - replay > 1n << 32n) r.replayLsn = replay;
    const primaryLsn = this.#wal.latest;
    if (primaryLsn === undefined) {
      // Not measurable (no primary position known yet): unknown, not 0.
      r.lagBytes = undefined;
      r.lagMs = undefined;
      return;
    }
    const behind = primaryLsn !== undefined && primaryLsn > replay ? primaryLsn - replay : 0n;
    r.lagBytes = Number(behind);
    const since = row?.since_ms === null || row?.since_ms === undefined ? undefined : Number(row.since_ms);
    r.lagMs = behind === 0n ? 0 : this.#wal.lagMs(replay, since, now);
  }
}
