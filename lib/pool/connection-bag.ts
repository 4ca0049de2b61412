import { AcquireQueue, type Waiter } from './acquire-queue.js';

/**
 * The connections of one pool and the callers waiting for one (HikariCP's `ConcurrentBag`,
 * single-threaded): every open or opening connection, the idle ones as a stack (the most recently
 * used is lent first, the bottom holds the ones idle longest), and a FIFO of waiters with one
 * deadline timer. A borrower `take`s an idle connection or `wait`s in the queue; `requite` gives
 * a connection back to the oldest waiter, else to the idle stack.
 */
export class ConnectionBag<T> {
  readonly #all = new Set<T>();
  readonly #idle: T[] = [];
  readonly #waiters: AcquireQueue<T>;

  /** `onExpired` builds the error a waiter whose deadline passed receives. */
  constructor(onExpired: (waiter: Waiter<T>) => Error = () => new Error('timed out waiting for a connection')) {
    this.#waiters = new AcquireQueue<T>(onExpired);
  }

  /** Open or opening connections (pg-pool's `totalCount`). */
  get total(): number {
    return this.#all.size;
  }

  get idle(): number {
    return this.#idle.length;
  }

  /** Callers waiting for a connection (pg-pool's `waitingCount`). */
  get waiting(): number {
    return this.#waiters.length;
  }

  has(item: T): boolean {
    return this.#all.has(item);
  }

  add(item: T): void {
    this.#all.add(item);
  }

  /** The most recently pooled idle connection, or `undefined`. */
  take(): T | undefined {
    return this.#idle.pop();
  }

  /** Pools an idle connection (on top), whoever waits. */
  put(item: T): void {
    this.#idle.push(item);
  }

  /** Queues a caller for the next connection given back (or opened for it), until `deadline` (`performance.now()` ms). */
  wait(deadline: number, callback: Waiter<T>['callback']): void {
    this.#waiters.push(deadline, callback);
  }

  /** Gives `item` back: straight to the oldest waiter, else on top of the idle stack. True when it went idle. */
  requite(item: T): boolean {
    const waiter = this.#waiters.shift();
    if (waiter !== undefined) {
      waiter.callback(undefined, item);
      return false;
    }
    this.#idle.push(item);
    return true;
  }

  /** The oldest waiter, taken out of the queue (to open a connection for it). */
  nextWaiter(): Waiter<T> | undefined {
    return this.#waiters.shift();
  }

  /** Fails every waiter with `err` (shutdown, a hung node). */
  rejectWaiters(err: Error): void {
    this.#waiters.rejectAll(err);
  }

  /** Takes `item` out of the idle stack if it is there. */
  takeIdle(item: T): boolean {
    const i = this.#idle.lastIndexOf(item);
    if (i === -1) return false;
    this.#idle.splice(i, 1);
    return true;
  }

  /** Forgets `item` (idle or not). Returns false when it was not in the bag. */
  remove(item: T): boolean {
    if (!this.#all.delete(item)) return false;
    this.takeIdle(item);
    return true;
  }

  /** Idle connections, longest idle first (a copy). */
  idleItems(): T[] {
    return this.#idle.slice();
  }

  /** Every connection (a copy). */
  items(): T[] {
    return [...this.#all];
  }
}
