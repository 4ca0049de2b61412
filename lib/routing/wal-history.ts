const WAL_HISTORY_MAX = 600;
const WAL_PAGE = 8192n;
const WAL_PAGE_HEADER = 24n;

interface WalMark {
  readonly lsn: bigint;
  /** When the primary was first and last seen at exactly this position. */
  readonly firstSeen: number;
  lastSeen: number;
}

/**
 * The primary's flushed WAL position over time, as sampled by the lag monitor.
 * It dates a replica's replay position: the WAL after it was written after the last time the
 * primary was seen at or before it, and before the first time it was seen past it.
 */
export class WalHistory {
  readonly #marks: WalMark[] = [];
  constructor(private readonly keepMs: number) {}

  /** Forgets every position: the next one recorded starts a new history (a new primary, or the same one after an outage). */
  reset(): void {
    this.#marks.length = 0;
  }

  get latest(): bigint | undefined {
    return this.#marks[this.#marks.length - 1]?.lsn;
  }

  record(lsn: bigint, at: number): void {
    const marks = this.#marks;
    const last = marks[marks.length - 1];
    if (last !== undefined && lsn === last.lsn) {
      if (at > last.lastSeen) last.lastSeen = at;
      return;
    }
    if (last !== undefined && lsn < last.lsn) {
      // An older position than already seen: a stale answer, or a new primary after a failover.
      if (at - last.lastSeen < 1000) return;
      marks.length = 0;
    }
    marks.push({ lsn, firstSeen: at, lastSeen: at });
    while (marks.length > 2 && (marks.length > WAL_HISTORY_MAX || marks[1]!.lastSeen < at - this.keepMs)) marks.shift();
  }

  /**
   * Estimated age in ms of the oldest WAL the replica at `replay` has not replayed, at `now`
   * (`0` when caught up). The WAL past `replay` was written after the last time the primary was
   * seen at or before `replay`, and after the last transaction the replica replayed (`sinceMs`
   * ago): the smaller of the two is the estimate. When the history does not reach back that far,
   * the time since the primary was first seen past `replay` (a lower bound) is used: right after
   * start-up, an idle database's old replay timestamp must not make a healthy replica look hours behind.
   */
  lagMs(replay: bigint, sinceMs: number | undefined, now: number): number {
    const marks = this.#marks;
    if (marks.length === 0 || replay >= marks[marks.length - 1]!.lsn) return 0;
    let i = marks.length - 1;
    while (i > 0 && marks[i - 1]!.lsn > replay) i--;
    const lower = Math.max(0, now - marks[i]!.firstSeen);
    if (i === 0) return lower;
    let upper = Math.max(0, now - marks[i - 1]!.lastSeen);
    if (sinceMs !== undefined && sinceMs >= 0 && sinceMs < upper) upper = sinceMs;
    return Math.max(lower, upper);
  }
}

/**
 * A primary position just past a WAL page header (where the next record would start) is the
 * same point as the page boundary a replica reports once it replayed the record ending there.
 */
export function recordEnd(lsn: bigint): bigint {
  return lsn % WAL_PAGE === WAL_PAGE_HEADER ? lsn - WAL_PAGE_HEADER : lsn;
}
