import type { PoolClient } from 'pg';
import { breaksConnection } from '../errors/failure-class.js';

/**
 * Watches a client while the library lends it out: whether the client itself failed (it emitted
 * `error` or `end`) and which errors its own statements produced. Only those may destroy the
 * connection or count against the node; a connection-class error the caller's own code threw (a
 * `fetch` refused, a 57P01 from another database) gives the healthy connection back as usual.
 */
export class ClientWatch {
  #failure: unknown;
  #produced: WeakSet<object> | undefined;
  readonly #onError = (err: unknown) => {
    this.#failure ??= err;
  };
  readonly #onEnd = () => {
    this.#failure ??= new Error('Connection ended while the client was lent out');
  };

  /** `listen`: also watch the client's `error` / `end` events (a transaction, which must know whether ROLLBACK can still be sent). */
  constructor(
    readonly client: PoolClient,
    private readonly listen = true,
  ) {
    if (!listen) return;
    client.on('error', this.#onError);
    client.on('end', this.#onEnd);
  }

  /** True once the client emitted `error` or `end`: its connection is gone. */
  get failed(): boolean {
    return this.#failure !== undefined;
  }

  /** Remembers `err` as produced by a statement on this client. */
  produced(err: unknown): void {
    if (err !== null && typeof err === 'object') (this.#produced ??= new WeakSet()).add(err);
  }

  /**
   * The error to give the client back with: `err` unless it is a connection-class error that did
   * not come from this client (then `undefined`: the connection is healthy); the client's own
   * failure when `fn` ended without an error of its own.
   */
  releaseError(err: unknown): unknown {
    if (err !== undefined && !breaksConnection(err)) return err;
    if (this.#failure !== undefined) return err ?? this.#failure;
    return err !== undefined && this.#produced?.has(err as object) ? err : undefined;
  }

  detach(): void {
    if (!this.listen) return;
    this.client.off('error', this.#onError);
    this.client.off('end', this.#onEnd);
  }
}

/** What a guarded client asks before each statement (`undefined` to go ahead, or the error to fail with) and tells after. */
export interface ClientGate {
  refusal(): Error | undefined;
  /** Called with every error a statement on the guarded client produced. */
  produced(err: unknown): void;
}

type Callback = (err: Error | null, res?: unknown) => void;

/**
 * The client handed to user code: every statement asks `gate` first (inside a transaction, once it
 * ended nothing reaches the connection, which by then belongs to the pool again) and errors its
 * statements produce are reported to `gate`. `release` replaces the client's own `release()`
 * (a transaction's client: nothing, the transaction gives it back); by default it is the client's.
 */
export function guardClient(client: PoolClient, gate: ClientGate, release?: () => void): PoolClient {
  const query = (...args: unknown[]): unknown => {
    const refused = gate.refusal();
    const last = args[args.length - 1];
    const callback = typeof last === 'function' ? (last as Callback) : undefined;
    if (refused !== undefined) {
      if (callback !== undefined) {
        process.nextTick(callback, refused);
        return undefined;
      }
      return Promise.reject(refused);
    }
    if (callback !== undefined) {
      args[args.length - 1] = (err: Error | null, res?: unknown) => {
        if (err) gate.produced(err);
        callback(err, res);
      };
    }
    const result = (client.query as (...a: unknown[]) => unknown)(...args);
    if (typeof (result as Promise<unknown> | undefined)?.then === 'function') {
      return (result as Promise<unknown>).catch((err: unknown) => {
        gate.produced(err);
        throw err;
      });
    }
    return result;
  };
  const bound = new Map<PropertyKey, { of: unknown; fn: unknown }>();
  return new Proxy(client, {
    get(target, key) {
      if (key === 'query') return query;
      if (key === 'release' && release !== undefined) return release;
      const value: unknown = Reflect.get(target, key, target);
      if (typeof value !== 'function') return value;
      let entry = bound.get(key);
      if (entry?.of !== value) {
        entry = { of: value, fn: (value as (...a: unknown[]) => unknown).bind(target) };
        bound.set(key, entry);
      }
      return entry.fn;
    },
    set(target, key, value) {
      return Reflect.set(target, key, value, target);
    },
  });
}

/** A watch that only tracks statement errors, and the client to lend with it (for `withClient` outside a transaction). */
export function watchLent(client: PoolClient): { watch: ClientWatch; lent: PoolClient } {
  const watch = new ClientWatch(client, false);
  const lent = guardClient(client, { refusal: () => undefined, produced: (err) => watch.produced(err) });
  return { watch, lent };
}
