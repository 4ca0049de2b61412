import type { RemoveReason } from '../pool.events.js';
import type { PooledConnection } from './pooled-connection.js';

export interface HousekeepingSettings {
  readonly min: number;
  readonly idleTimeoutMs: number;
  /** Client-side statement deadline; `0` disables. */
  readonly queryTimeoutMs: number;
}

export interface Sweep {
  /** Idle connections to close now, with why. */
  readonly retire: Array<[PooledConnection, RemoveReason]>;
  /** Connections whose statement has run past the deadline. */
  readonly overdue: PooledConnection[];
}

/**
 * One housekeeping pass (HikariCP's `HouseKeeper`): idle connections past their lifetime are
 * retired, idle ones above `min` idle for `idleTimeoutMs` are closed (longest idle first), and
 * connections whose statement has run longer than `queryTimeoutMs` are reported as overdue.
 * Pure: the pool acts on the result.
 */
export function sweep(idleLongestFirst: readonly PooledConnection[], every: readonly PooledConnection[], total: number, settings: HousekeepingSettings, now: number, perfNow: number): Sweep {
  const retire: Array<[PooledConnection, RemoveReason]> = [];
  let left = total;
  for (const conn of idleLongestFirst) {
    if (conn.expiresAt !== 0 && now >= conn.expiresAt) {
      retire.push([conn, 'lifetime']);
      left--;
    } else if (settings.idleTimeoutMs > 0 && left > settings.min && now - (conn.lastReleasedAt || conn.connectedAt) >= settings.idleTimeoutMs) {
      retire.push([conn, 'idle']);
      left--;
    }
  }
  const overdue: PooledConnection[] = [];
  if (settings.queryTimeoutMs > 0) {
    for (const conn of every) {
      if (conn.busySince !== 0 && !conn.broken && perfNow - conn.busySince > settings.queryTimeoutMs) overdue.push(conn);
    }
  }
  return { retire, overdue };
}

/** How often the sweep runs: a quarter of the shortest period it enforces, from 50 ms to 1 s. */
export function sweepPeriodMs(settings: HousekeepingSettings & { readonly maxLifetimeMs: number }): number {
  const periods = [settings.idleTimeoutMs, settings.queryTimeoutMs, settings.maxLifetimeMs].filter((ms) => ms > 0);
  if (periods.length === 0) return 1000;
  return Math.min(1000, Math.max(50, Math.ceil(Math.min(...periods) / 4)));
}

/** The housekeeper's one timer, `unref()`'d. */
export class Housekeeper {
  #timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly periodMs: number,
    private readonly tick: () => void,
  ) {}

  start(): void {
    if (this.#timer !== undefined) return;
    this.#timer = setInterval(this.tick, this.periodMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
