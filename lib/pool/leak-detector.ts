import type { PooledConnection } from './pooled-connection.js';

/** What a leak report tells its pool. */
export interface LeakListener {
  leaked(conn: PooledConnection, thresholdMs: number, stack: string): void;
  returned(conn: PooledConnection, heldMs: number): void;
}

/**
 * Warns when a borrowed connection is held longer than `thresholdMs`, with the stack of the
 * code that took it (captured at acquire time, formatted only when it leaks), and again when a
 * reported connection finally comes back.
 */
export class LeakDetector {
  constructor(
    readonly thresholdMs: number,
    private readonly listener: LeakListener,
  ) {}

  get enabled(): boolean {
    return this.thresholdMs > 0;
  }

  arm(conn: PooledConnection, origin: Error): void {
    conn.leakOrigin = origin;
    conn.leaked = false;
    conn.leakTimer = setTimeout(() => {
      conn.leaked = true;
      this.listener.leaked(conn, this.thresholdMs, conn.leakOrigin?.stack ?? '');
    }, this.thresholdMs);
    conn.leakTimer.unref();
  }

  clear(conn: PooledConnection, now: number): void {
    if (conn.leakTimer === undefined) return;
    clearTimeout(conn.leakTimer);
    conn.leakTimer = undefined;
    conn.leakOrigin = undefined;
    if (conn.leaked) {
      conn.leaked = false;
      this.listener.returned(conn, now - conn.acquiredAt);
    }
  }
}
