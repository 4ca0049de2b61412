/** Upper bounds (ms) of the latency buckets kept per node; O(1) to record, no per-query allocation. */
export const LATENCY_BUCKETS_MS = [
  0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, Infinity,
] as const;

export class LatencyHistogram {
  readonly counts = new Array<number>(LATENCY_BUCKETS_MS.length).fill(0);
  count = 0;
  sumMs = 0;
  maxMs = 0;

  record(ms: number): void {
    let i = 0;
    while (ms > LATENCY_BUCKETS_MS[i]!) i++;
    this.counts[i]!++;
    this.count++;
    this.sumMs += ms;
    if (ms > this.maxMs) this.maxMs = ms;
  }

  /** Bucket-resolution percentile (upper bound of the bucket holding it), `0` when empty. */
  percentile(p: number): number {
    if (this.count === 0) return 0;
    const rank = Math.ceil((p / 100) * this.count);
    let seen = 0;
    for (let i = 0; i < this.counts.length; i++) {
      seen += this.counts[i]!;
      if (seen >= rank) return i === this.counts.length - 1 ? this.maxMs : LATENCY_BUCKETS_MS[i]!;
    }
    return this.maxMs;
  }
}

/** Monotonic counters of one node. */
export class NodeCounters {
  /** Clients handed out. */
  acquired = 0;
  /** Clients given back. */
  released = 0;
  /** Physical connections opened. */
  created = 0;
  /** Physical connections closed by the pool (any reason). */
  removed = 0;
  /** Callers that got a `PoolAcquireTimeoutError`. */
  acquireTimeouts = 0;
  /** Connection-class errors (connect failures, broken sockets, server shutdowns). */
  connectionErrors = 0;
  /** Connects refused because the server had no connection slot left (53300, 53400). */
  serverFull = 0;
  /** Errors on idle clients (the server killed them while pooled). */
  idleErrors = 0;
  /** Connections that failed validation on borrow and were replaced. */
  validationFailures = 0;
  /** Clients held longer than `leakDetectionThresholdMs`. */
  leaks = 0;
  /** Connections retired for lifetime, max uses, eviction, a demoted primary or a failed rollback. */
  evictions = 0;
  /** Clients returned inside an open transaction and rolled back. */
  rollbacksOnRelease = 0;
  /** Connections whose session state (settings, role, LISTEN, temporary tables, …) was reset on release. */
  sessionResets = 0;
  /** Queries run through the library. */
  queries = 0;
  /** Queries that failed (any error). */
  queryErrors = 0;
  /** Queries slower than `slowQueryMs`. */
  slowQueries = 0;
  /** Reads routed to this node. */
  routedReads = 0;
  /** Writes (and non-read-only work) routed to this node. */
  routedWrites = 0;
  /** Reads this node served because no replica was usable (primary only). */
  fallbacks = 0;
  /**
   * Reads in a scope that wrote which could not fetch the primary's WAL position (primary down or
   * unreachable) and went to the replica that had replayed the most instead (primary only).
   */
  rywUnverified = 0;
  /** Reads retried on this node after another one failed. */
  retries = 0;
  /** Times this replica was banned. */
  bans = 0;
  /** Times this node's breaker opened. */
  breakerOpens = 0;
  /** Connections opened in the background to bring the pool back to `min` (or to probe an open breaker). */
  refills = 0;
  /** Single statements run again on a new connection because the server had terminated the pooled one (57P01). */
  staleRetries = 0;
  /** Times the primary answered 25006 while in recovery (demoted) and every connection was evicted. */
  demotions = 0;
  /** Statements that got no answer within their client-side deadline (the connection was destroyed). */
  statementTimeouts = 0;
  /** Writes that waited for a role change (`failover.holdWritesMs`), counted on the node they were sent to (or refused by). */
  heldWrites = 0;
  /** Total ms the held writes waited. */
  heldWriteMs = 0;
  /** Held writes that reached `failover.holdWritesMs` with no primary and failed with `PrimaryUnavailableError`. */
  holdTimeouts = 0;
  /** The library's own statements (probes, lag and replay checks, health pings, the sizing advisor). */
  systemQueries = 0;
  /** Parameterized statements run from a connection's prepared-statement cache. */
  preparedHits = 0;
  /** Parameterized statements not in the cache when sent (counted towards the threshold, or prepared by this send). */
  preparedMisses = 0;
  /** Prepared statements deallocated to keep a connection's cache within `cacheSize`. */
  preparedEvictions = 0;
  /** Prepared statements the server refused (schema change: 0A000, lost session state: 26000) and that were dropped. */
  preparedInvalidations = 0;
}
