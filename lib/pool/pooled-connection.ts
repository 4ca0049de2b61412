import net from 'node:net';
import pg from 'pg';
import type { PoolConfig } from 'pg';
import type { RemoveReason } from '../pool.events.js';
import { sendCancelRequest } from './cancel-request.js';
import type { StatementCache } from './statement-cache.js';
import { touchesSession } from './session-reset.js';

/** Lifetime jitter: each connection retires within ±2.5% of `maxLifetimeMs`, so they do not all go at once. */
export const LIFETIME_JITTER = 0.025;

type StreamOption = PoolConfig['stream'];

/**
 * One physical connection of a pool (HikariCP's `PoolEntry`): the `pg.Client`, the socket it
 * runs on (handed to pg through its public `stream` option, so a hung one can be destroyed), and
 * what the pool knows about it. Plain fields: read and written on the hot path.
 */
export class PooledConnection {
  readonly client: pg.Client;
  #socket: { destroy(err?: Error): void } | undefined;
  /** `Date.now()` when it opened; `expiresAt` 0 means no lifetime. */
  connectedAt = 0;
  expiresAt = 0;
  generation: number;
  lastReleasedAt = 0;
  /** `Date.now()` when handed out; 0 while pooled. */
  acquiredAt = 0;
  /** `performance.now()` when the statement in flight was sent; 0 when none. */
  busySince = 0;
  inFlight = 0;
  uses = 0;
  broken = false;
  /** The error that broke it (a server FATAL such as 57P01, a socket error, a missed deadline). */
  brokenBy: unknown = undefined;
  /** The last error a statement of this connection failed with: tells the client's own failures from the caller's. */
  lastError: unknown = undefined;
  /** Set when a deadline destroyed it: reported instead of the driver's "Connection terminated". */
  abortedBy: Error | undefined = undefined;
  removeReason: RemoveReason | undefined = undefined;
  closed = false;
  /** The handle lent to the current borrower, if any. */
  handle: object | undefined = undefined;
  leakTimer: NodeJS.Timeout | undefined = undefined;
  lifetimeTimer: NodeJS.Timeout | undefined = undefined;
  leakOrigin: Error | undefined = undefined;
  leaked = false;
  /** Automatic prepared statements of this session; `undefined` when off. */
  statements: StatementCache | undefined = undefined;
  /** A statement of this checkout may have changed session state: reset before the next borrower. */
  dirty = false;
  /** The connection hook (`onConnect`) ran on it: it runs again after a session reset. */
  hooked = false;
  #ended: Promise<void> | undefined;

  /** `onError` hears a socket or server error, or an unexpected end (the pool drops an idle connection then). */
  constructor(config: PoolConfig, Client: typeof pg.Client, generation: number, onError: (conn: PooledConnection, err: unknown) => void) {
    this.generation = generation;
    this.client = new Client({ ...config, stream: this.#streamFactory(config.stream) as unknown as PoolConfig['stream'] });
    this.client.on('error', (err: unknown) => {
      this.markBroken(err);
      onError(this, err);
    });
    this.client.once('end', () => {
      this.closed = true;
      if (!this.broken && this.#ended === undefined) {
        const err = new Error('Connection terminated unexpectedly');
        this.markBroken(err);
        onError(this, err);
      }
    });
  }

  #streamFactory(given: StreamOption): (config: unknown) => net.Socket {
    return (config: unknown) => {
      const stream = (typeof given === 'function' ? (given as unknown as (c: unknown) => net.Socket)(config) : (given as unknown as net.Socket | undefined) ?? new net.Socket());
      this.#socket = stream;
      return stream;
    };
  }

  /** Stamps a newly opened connection with its lifetime (jittered) and generation. */
  opened(now: number, maxLifetimeMs: number): void {
    this.connectedAt = now;
    this.expiresAt = maxLifetimeMs > 0 ? now + maxLifetimeMs * (1 - LIFETIME_JITTER + Math.random() * 2 * LIFETIME_JITTER) : 0;
  }

  /** A caller's statement (text or query config): marks the checkout dirty when it may change session state. */
  note(query: unknown): void {
    if (this.dirty) return;
    const text = typeof query === 'string' ? query : (query as { text?: unknown } | null | undefined)?.text;
    if (touchesSession(text)) this.dirty = true;
  }

  /** A statement was sent (several may be queued on one client). */
  began(): void {
    if (this.inFlight++ === 0) this.busySince = performance.now();
  }

  /** A statement answered; returns the error to report (a deadline's own error replaces the driver's). */
  finished(err: unknown): Error | undefined {
    this.busySince = --this.inFlight === 0 ? 0 : performance.now();
    if (err === undefined || err === null) return undefined;
    const reported = (this.abortedBy ?? err) as Error;
    this.lastError = reported;
    return reported;
  }

  markBroken(err: unknown): void {
    this.broken = true;
    this.brokenBy ??= err;
  }

  /** True when `err` came from this connection (one of its statements failed with it, or it broke with it). */
  raised(err: unknown): boolean {
    for (let e = err, depth = 0; e !== undefined && e !== null && depth < 3; e = (e as { cause?: unknown }).cause, depth++) {
      if (e === this.lastError || e === this.brokenBy || e === this.abortedBy) return true;
    }
    return false;
  }

  /**
   * Kills the connection now, whatever the server does: the socket is destroyed (no FIN wait on
   * a frozen peer), so a statement in flight fails at once with `reason`.
   */
  destroy(reason: Error): void {
    this.abortedBy ??= reason;
    this.markBroken(reason);
    // Not client.end(): while connecting, pg would then never call the connect callback.
    if (this.#socket !== undefined) this.#socket.destroy();
    else void this.close(0);
  }

  /**
   * The library gives up on the statement in flight (its client-side deadline passed): a
   * CancelRequest goes to the server, bounded by `cancelWithinMs`, so the statement stops there
   * too, and the connection is destroyed at once (the caller gets `reason` now). Resolves whether
   * the server took the cancel.
   */
  abandon(reason: Error, cancelWithinMs: number): Promise<boolean> {
    const cancelled = this.busySince !== 0 ? sendCancelRequest(this.client, cancelWithinMs) : Promise.resolve(false);
    this.destroy(reason);
    return cancelled;
  }

  /** Ends the connection once; settles when its socket closed, or after `waitMs` (then destroys it). */
  close(waitMs: number): Promise<void> {
    if (this.#ended === undefined) {
      this.#ended = new Promise<void>((resolve) => {
        if (this.closed) return resolve();
        const timer = setTimeout(() => {
          this.#socket?.destroy();
          resolve();
        }, waitMs);
        timer.unref();
        const done = () => {
          clearTimeout(timer);
          resolve();
        };
        try {
          Promise.resolve(this.client.end()).then(done, done);
        } catch {
          // A custom Client class whose end() throws (or has none): the socket is destroyed instead.
          this.#socket?.destroy();
          done();
        }
      });
    }
    return this.#ended;
  }
}
