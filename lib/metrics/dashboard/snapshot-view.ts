// What the dashboard page reads of `GET /metrics/db-pool` (PoolMetricsSnapshot), as the browser
// code sees it. Types only: browser.ts imports them, and dashboard.page.ts checks that the
// server's snapshot type still fits them, so a change to the endpoint the page does not follow
// fails the type check.

/** Latency of one kind of operation, in milliseconds; `buckets` counts per bucket of `latencyBucketsMs`. */
export interface LatencyView {
  readonly p50: number;
  readonly p95: number;
  readonly p99: number;
  readonly max: number;
  readonly buckets: readonly number[];
}

export interface CountersView {
  readonly acquired: number;
  readonly routedReads: number;
  readonly routedWrites: number;
  readonly fallbacks: number;
  readonly acquireTimeouts: number;
  readonly errors: number;
  readonly leaks: number;
  readonly slowQueries: number;
  readonly evictions: number;
  readonly bans: number;
  readonly preparedHits: number;
  readonly preparedMisses: number;
  readonly preparedEvictions: number;
  readonly preparedInvalidations: number;
}

export interface SizingView {
  readonly suggestedMax: number | null;
  readonly budgetMax: number | null;
  readonly limitedByBudget: boolean;
  readonly advice: string;
  readonly busiest: { readonly load: number } | null;
  readonly peakInUse: number;
  readonly waitingShare: number;
  readonly coveredMs: number;
  readonly acquireMs: { readonly p95: number };
}

export interface NodeView {
  readonly role: string;
  readonly topologyRole: string | null;
  readonly address: string;
  readonly size: number;
  readonly idle: number;
  readonly inUse: number;
  readonly waiting: number;
  readonly min: number;
  readonly max: number;
  readonly usage: number;
  readonly available: boolean;
  readonly breaker: { readonly state: string };
  readonly banned: boolean;
  readonly lagMs: number | null;
  readonly lagBytes: number | null;
  readonly acquireMs: LatencyView;
  readonly counters: CountersView;
  readonly sizing: SizingView | null;
}

export interface TopologyView {
  readonly primary: string;
  readonly primarySince: number;
  readonly writable: boolean;
  readonly fenced: readonly string[];
}

export interface DatabaseView {
  readonly preset: string;
  readonly strategy: string;
  readonly fallbackToPrimary: boolean;
  readonly maxReplicationLagMs: number;
  readonly topology: TopologyView | null;
  readonly nodes: Readonly<Record<string, NodeView>>;
}

/** The body of `GET /metrics/db-pool`, as the page reads it. */
export interface SnapshotView {
  readonly at: number;
  /** Upper bounds (ms) of the latency buckets; the last one (`null`) is +Inf. */
  readonly latencyBucketsMs: ReadonlyArray<number | null>;
  readonly databases: Readonly<Record<string, DatabaseView>>;
}

/** The configuration the page embeds as JSON (`#pool-dashboard-config`). */
export interface DashboardConfig {
  /** URL (absolute path) of the JSON endpoint the page polls. */
  readonly jsonUrl: string;
  /** Samples kept per node (one per second). */
  readonly historySamples: number;
}
