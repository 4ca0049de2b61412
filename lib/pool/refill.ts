import { countsForBreaker } from '../errors/failure-class.js';
import { PoolConnectionError, PoolStatementTimeoutError } from '../pool.exceptions.js';
import { REFILL_FIRST_DELAY_MS } from './connection-factory.js';
import { sweep } from './housekeeper.js';
import { errorMessage, type PoolState, type RefillPart } from './pool-state.js';
import { CANCEL_TIMEOUT_MS } from './statement-deadline.js';

/** Background refill: the retry delay doubles up to this cap, each with jitter (50–100%). */
const REFILL_MAX_DELAY_MS = 500;

/**
 * Keeps a node pool at `min`: the start-up warm-up (first connection with backoff and jitter,
 * then up to `min`), the background refill after connections left (the circuit breaker's
 * half-open trial included), and the housekeeping pass (HikariCP's `HouseKeeper` and
 * `fillPool`).
 */
export class Refill implements RefillPart {
  readonly #s: PoolState;
  #timer: NodeJS.Timeout | undefined;
  #running = false;
  /** Connections the background refill is opening (each goes to the first waiter, or the idle stack). */
  opening = 0;
  #delay = REFILL_FIRST_DELAY_MS;
  /** The node is banned (its ban lasts until a probe succeeds): no background connection until then. */
  paused = false;
  /** The warm-up retries on its own schedule: no background refill beside it. */
  #warmingUp = false;
  /** Wakes the warm-up's backoff sleep when the pool ends (no timer outlives a rejected start). */
  #wakeWarmUp: (() => void) | undefined;

  constructor(s: PoolState) {
    this.#s = s;
  }

  schedule(delayMs: number): void {
    if (this.#timer !== undefined || this.#running || !this.#needed()) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#refill();
    }, delayMs);
    this.#timer.unref();
  }

  /** The node is banned: the background refill waits until `resume()` (a probe succeeded). */
  pause(): void {
    this.paused = true;
    this.#cancel();
  }

  /** The ban is lifted: the pool refills to `min` again. */
  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.#delay = REFILL_FIRST_DELAY_MS;
    this.schedule(0);
  }

  /** The pool ends: no refill, and the warm-up's backoff wakes. */
  stop(): void {
    this.#cancel();
    this.#wakeWarmUp?.();
  }

  /** Opens the first connection (with backoff + jitter), then up to `min`. Throws `PoolConnectionError`. */
  async warmUp(): Promise<void> {
    this.#warmingUp = true;
    try {
      await this.#warmUp();
    } finally {
      this.#warmingUp = false;
      this.#wakeWarmUp = undefined;
      // Whatever the warm-up could not open (a replica that failed is banned, which pauses this;
      // an ended pool refills nothing).
      this.schedule(REFILL_FIRST_DELAY_MS);
    }
  }

  /** One housekeeping pass: idle and expired connections retired, overdue statements abandoned, `min` refilled. */
  housekeep(): void {
    const s = this.#s;
    if (s.ended) return;
    const bag = s.bag;
    const perfNow = performance.now();
    const result = sweep(bag.idleItems(), bag.items(), bag.total, s.config, Date.now(), perfNow);
    for (const [conn, reason] of result.retire) {
      if (!bag.takeIdle(conn)) continue;
      if (reason === 'lifetime') s.counters.evictions++;
      void s.releaser.remove(conn, reason);
    }
    for (const conn of result.overdue) {
      const err = new PoolStatementTimeoutError(s.database, s.name, s.config.address, s.config.queryTimeoutMs, 'the statement in flight');
      void conn.abandon(err, CANCEL_TIMEOUT_MS);
      s.timedOut(err);
    }
    // A lazy pool that never connected stays empty until its first use.
    if (bag.total < s.config.min && s.counters.created > 0) this.schedule(0);
  }

  #cancel(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #needed(): boolean {
    const s = this.#s;
    return !s.ended && !this.paused && !this.#warmingUp && s.bag.total < s.config.min;
  }

  /**
   * Opens connections until the pool holds `min` again; a failure retries with exponential
   * backoff and jitter. The breaker rules (docs/options.md, "Circuit breaker, metrics, alerts, load sizing"): while it is closed, a round
   * that fails counts as one failure (however many connects it made); while it is open the
   * refill waits for `retryAt` and then is the half-open trial itself (one connect): a success
   * closes it, a failure reopens it for another `resetTimeoutMs`.
   */
  async #refill(): Promise<void> {
    if (!this.#needed()) return;
    const s = this.#s;
    const breaker = s.breaker;
    const trial = breaker.isOpen;
    if (trial && !breaker.admit()) {
      // Not yet time, or a caller holds the trial: look again when it may be over.
      this.schedule(Math.max(REFILL_FIRST_DELAY_MS, (breaker.retryAt ?? 0) - Date.now()));
      return;
    }
    this.#running = true;
    let failure: Error | undefined;
    let attempted = 0;
    try {
      const missing = trial ? 1 : s.config.min - s.bag.total;
      const results = await Promise.allSettled(
        Array.from({ length: missing }, () => {
          if (s.ended || s.bag.total >= s.config.max) return Promise.resolve();
          attempted++;
          return this.#openOne();
        }),
      );
      for (const r of results) if (r.status === 'rejected') failure ??= r.reason as Error;
    } finally {
      this.#running = false;
    }
    if (s.ended) return;
    if (failure === undefined) {
      if (trial && attempted === 0) breaker.trialAbandoned();
      this.#delay = REFILL_FIRST_DELAY_MS;
      this.schedule(REFILL_FIRST_DELAY_MS);
      return;
    }
    // Only a failure to reach the server counts (a connection-class error or a connect timeout).
    const counts = countsForBreaker(failure);
    if (counts && (trial || !breaker.isOpen)) breaker.failure(s.host.scrub(errorMessage(failure)));
    else if (trial) breaker.trialAbandoned();
    const delay = this.#delay;
    this.#delay = Math.min(delay * 2, REFILL_MAX_DELAY_MS);
    const retryIn = breaker.isOpen ? Math.max(0, (breaker.retryAt ?? 0) - Date.now()) : Math.max(delay * (0.5 + Math.random() * 0.5), s.factory.fullUntil - Date.now());
    this.schedule(retryIn);
  }

  /** One background connection, opened and pooled (it goes to the first waiter, if any). */
  #openOne(): Promise<void> {
    const s = this.#s;
    const t0 = performance.now();
    this.opening++;
    return new Promise<void>((resolve, reject) => {
      s.factory.open(
        t0,
        t0 + s.config.connectTimeoutMs,
        (err, conn) => {
          this.opening--;
          if (err !== undefined) {
            reject(err);
            return;
          }
          s.counters.refills++;
          s.breaker.success();
          s.releaser.requite(conn!, Date.now());
          resolve();
        },
        true,
      );
    });
  }

  async #warmUp(): Promise<void> {
    const s = this.#s;
    const node = s.node;
    const attempts = s.host.retryAttempts;
    let delay = s.host.retryDelayMs;
    let lastError = '';
    for (let attempt = 1; attempt <= attempts; attempt++) {
      try {
        node.release(await node.acquire());
        lastError = '';
        break;
      } catch (err) {
        lastError = s.host.scrub(errorMessage(err)).replace(/\.$/, '');
        if (s.ended) break;
        if (attempt < attempts) {
          s.host.warn(`Connecting to "${s.database}/${s.name}" at ${s.config.address} failed (attempt ${attempt}/${attempts}): ${lastError}. Retrying in ${delay}ms.`);
          await this.#backOff(delay * (0.8 + Math.random() * 0.4));
          if (s.ended) break;
          delay = Math.min(delay * 2, 30_000);
        }
      }
    }
    if (lastError) {
      throw new PoolConnectionError(s.database, s.name, s.config.address, attempts, lastError);
    }
    // Holding `min` clients at once opens `min` connections: an idle one is reused by the first acquire.
    if (s.config.min > s.bag.total && !s.ended) {
      const clients = await Promise.allSettled(Array.from({ length: s.config.min }, () => node.acquire()));
      for (const r of clients) if (r.status === 'fulfilled') node.release(r.value);
    }
  }

  /**
   * The warm-up's wait between two attempts; the pool's end cuts it short. Not `unref()`'d: while
   * the start is retrying nothing else may keep the process alive, and an application that cannot
   * start must end with the error (non-zero), not exit 0 in the middle of its retries.
   */
  #backOff(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.#wakeWarmUp = undefined;
        resolve();
      }, ms);
      this.#wakeWarmUp = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
}
