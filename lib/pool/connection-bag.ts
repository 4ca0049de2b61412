/**
 * The connections of one pool (HikariCP's `ConcurrentBag`, single-threaded): every open or
 * opening connection, and the idle ones as a stack, so the most recently used is lent first and
 * the bottom holds the ones idle longest.
 */
export class ConnectionBag<T> {
  readonly #all = new Set<T>();
  readonly #idle: T[] = [];

  /** Open or opening connections (pg-pool's `totalCount`). */
  get total(): number {
    return this.#all.size;
  }

  get idle(): number {
    return this.#idle.length;
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

  /** Pools an idle connection (on top). */
  put(item: T): void {
    this.#idle.push(item);
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
