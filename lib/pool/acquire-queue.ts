/** A caller waiting for a connection, with the moment its acquire timeout expires (`performance.now()` ms). */
export interface Waiter<T> {
  readonly deadline: number;
  readonly callback: (err: Error | undefined, item: T | undefined) => void;
}

/**
 * Callers waiting for a connection, served first in, first out. One timer watches the oldest
 * deadline (all callers of a pool share one acquire timeout, so deadlines come in queue order)
 * instead of one timer per waiter; `onExpired` builds the error each expired caller receives.
 */
export class AcquireQueue<T> {
  readonly #waiters: Waiter<T>[] = [];
  #timer: NodeJS.Timeout | undefined;

  constructor(private readonly onExpired: (waiter: Waiter<T>) => Error) {}

  get length(): number {
    return this.#waiters.length;
  }

  push(deadline: number, callback: Waiter<T>['callback']): void {
    const waiter: Waiter<T> = { deadline, callback };
    this.#waiters.push(waiter);
    if (this.#timer === undefined) this.#arm(deadline);
  }

  /** The oldest waiter, taken out of the queue. */
  shift(): Waiter<T> | undefined {
    const waiter = this.#waiters.shift();
    if (this.#waiters.length === 0 && this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    return waiter;
  }

  /** Fails every waiter with `err` (shutdown, a hung node). */
  rejectAll(err: Error): void {
    const waiters = this.#waiters.splice(0);
    clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const w of waiters) w.callback(err, undefined);
  }

  #arm(deadline: number): void {
    this.#timer = setTimeout(() => this.#expire(), Math.max(0, Math.ceil(deadline - performance.now())));
    this.#timer.unref();
  }

  #expire(): void {
    this.#timer = undefined;
    const now = performance.now();
    const waiters = this.#waiters;
    while (waiters.length !== 0 && waiters[0]!.deadline <= now) {
      const waiter = waiters.shift()!;
      waiter.callback(this.onExpired(waiter), undefined);
    }
    if (waiters.length !== 0 && this.#timer === undefined) this.#arm(waiters[0]!.deadline);
  }
}
