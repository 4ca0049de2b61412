export interface BreakerSettings {
  readonly failureThreshold: number;
  readonly resetTimeoutMs: number;
}

/** What the breaker tells its pool. */
export interface BreakerListener {
  opened(failures: number, retryAt: number, lastFailure: string, reopened: boolean): void;
  closed(): void;
}

/**
 * Consecutive connection failures open the breaker: calls fail fast until `resetTimeoutMs` has
 * passed, then one trial call goes through (half-open); a success closes it, a failed trial reopens
 * it (`reopened`). Failures of calls that were already under way when it opened change nothing.
 */
export class CircuitBreaker {
  #failures = 0;
  #openUntil = 0;
  #trialInFlight = false;
  #lastFailure = '';

  constructor(
    private readonly settings: () => BreakerSettings,
    private readonly listener: BreakerListener,
  ) {}

  /** Closed and no failure counted: the hot path's only check. */
  get clean(): boolean {
    return this.#openUntil === 0 && this.#failures === 0;
  }

  get isOpen(): boolean {
    return this.#openUntil !== 0;
  }

  get failures(): number {
    return this.#failures;
  }

  get lastFailure(): string {
    return this.#lastFailure;
  }

  get retryAt(): number | undefined {
    return this.#openUntil === 0 ? undefined : this.#openUntil;
  }

  state(now = Date.now()): 'closed' | 'open' | 'half-open' {
    return this.#openUntil === 0 ? 'closed' : now >= this.#openUntil ? 'half-open' : 'open';
  }

  /** Closed, or open long enough for a trial. */
  get available(): boolean {
    return this.#openUntil === 0 || (Date.now() >= this.#openUntil && !this.#trialInFlight);
  }

  /** `false` when a call must fail fast; else lets it through (taking the trial when half-open). */
  admit(now = Date.now()): boolean {
    if (this.#openUntil === 0) return true;
    if (now < this.#openUntil || this.#trialInFlight) return false;
    this.#trialInFlight = true;
    return true;
  }

  /** The trial call ended without reaching the server (a queue timeout, say): another may try. */
  trialAbandoned(): void {
    this.#trialInFlight = false;
  }

  success(): void {
    if (this.#openUntil === 0 && this.#failures === 0) return;
    const wasOpen = this.#openUntil !== 0;
    this.#failures = 0;
    this.#openUntil = 0;
    this.#trialInFlight = false;
    if (wasOpen) this.listener.closed();
  }

  failure(message: string): void {
    this.#failures++;
    this.#lastFailure = message;
    const { failureThreshold, resetTimeoutMs } = this.settings();
    if (!this.#trialInFlight && this.#failures < failureThreshold) return;
    // Already open and this was not the trial (a call let through before it opened): counted,
    // but the breaker neither opens again nor pushes its retry time back — one opening, one event.
    if (this.#openUntil !== 0 && !this.#trialInFlight) return;
    const reopened = this.#openUntil !== 0;
    this.#trialInFlight = false;
    this.#openUntil = Date.now() + resetTimeoutMs;
    this.listener.opened(this.#failures, this.#openUntil, message, reopened);
  }
}
