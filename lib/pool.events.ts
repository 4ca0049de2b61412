import type { NodeRole } from './pool.interfaces.js';

interface EventBase {
  /** Database name (`default` unless named). */
  database: string;
  /** Node name, e.g. `primary`, `replica-1`. */
  node: string;
  role: NodeRole;
  /** `Date.now()` when it happened. */
  at: number;
}

export type PoolEvent =
  | (EventBase & { type: 'connect'; durationMs: number })
  | (EventBase & { type: 'acquire'; waitMs: number })
  | (EventBase & { type: 'release'; heldMs: number })
  | (EventBase & { type: 'remove'; reason: RemoveReason })
  | (EventBase & { type: 'error'; kind: ErrorKind; message: string })
  | (EventBase & { type: 'slow-query'; durationMs: number; text: string })
  | (EventBase & { type: 'leak'; heldMs: number; stack: string })
  | (EventBase & { type: 'replica-banned'; untilMs: number; reason: string })
  | (EventBase & { type: 'replica-restored' })
  | (EventBase & { type: 'breaker-open'; retryAt: number; failures: number })
  | (EventBase & { type: 'breaker-closed' })
  /** `node` answers as the primary now and takes the writes; `previous` was the write node before. */
  | (EventBase & { type: 'primary-changed'; previous: string; timeline: number | undefined })
  /** A role check found `node` in another role than before (`role` is its pool's role now). */
  | (EventBase & { type: 'node-role-changed'; from: TopologyRole; to: TopologyRole; reason: string })
  /** More than one node answers as a primary: `node` is fenced (no reads, no writes); `writer` keeps the writes. */
  /** A write waited for the primary to change (`failover.holdWritesMs`): sent on the new primary, refused, or timed out. */
  | (EventBase & { type: 'write-held'; waitedMs: number; outcome: 'sent' | 'failed' | 'timed-out' })
  | (EventBase & { type: 'split-brain'; writer: string; primaries: ReadonlyArray<{ node: string; timeline: number | undefined }> })
  | (EventBase & {
      type: 'alert';
      alert: AlertKind;
      /** `critical` for pool-usage-critical and pool-exhausted, else `warning`. */
      level: AlertLevel;
      message: string;
      /** The measured value: callers waiting, or in-use / max as a ratio. */
      value: number;
      threshold: number;
      /** Pool counts when the alert fired. */
      state: { total: number; idle: number; inUse: number; waiting: number; max: number };
    })
  | (EventBase & {
      type: 'sizing-advice';
      /** `saturated`: callers waited through much of the window; `over-provisioned`: the peak stayed far below max. */
      advice: SizingAdviceKind;
      message: string;
      max: number;
      /** The max the observed load calls for (Little's law plus headroom), within the max_connections budget. */
      suggestedMax: number;
      /** The largest max the start-up sizing advisor's budget leaves each pool on that server; `null` when unknown. */
      budgetMax: number | null;
      peakInUse: number;
      /** Share of the window's samples at which callers were waiting. */
      waitingShare: number;
      /** Arrival rate × (mean usage + mean acquire wait) of the busiest slot, in connections. */
      load: number;
    });

export type PoolEventType = PoolEvent['type'];

/**
 * A node's role as the role checks found it: `primary` (the write node), `replica` (in read
 * rotation), `fenced` (a second primary on an older timeline: out of rotation), `unknown`
 * (not reachable since it stopped being the write node).
 */
export type TopologyRole = 'primary' | 'replica' | 'fenced' | 'unknown';

export type RemoveReason = 'error' | 'lifetime' | 'max-uses' | 'evicted' | 'validation' | 'rollback-failed' | 'reset-failed' | 'idle' | 'shutdown';

/** `server-full`: a connect met 53300 / 53400 (no connection slot left on the server). */
export type ErrorKind = 'connection' | 'acquire-timeout' | 'validation' | 'idle-client' | 'query' | 'read-only' | 'server-full';

/**
 * `pool-waiting`: more than `alerts.waitingThreshold` callers wait; `pool-usage-high` /
 * `pool-usage-critical`: in-use / max above `alerts.usageWarn` / `alerts.usageCritical`;
 * `pool-exhausted`: no idle connection while callers wait.
 */
export type AlertKind = 'pool-waiting' | 'pool-usage-high' | 'pool-usage-critical' | 'pool-exhausted';

export type AlertLevel = 'warning' | 'critical';

export type SizingAdviceKind = 'saturated' | 'over-provisioned';

