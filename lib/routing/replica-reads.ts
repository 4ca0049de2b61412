import type { PoolClient, QueryResult, QueryResultRow } from 'pg';
import type { ReaderState } from './reader-state.js';
import { isReadOnlyViolation, neverSent } from '../errors/sql-state.js';
import { breaksConnection, leavesRotation, retryElsewhere } from '../errors/failure-class.js';
import type { NodePool, QueryInput } from '../pool/node-pool.js';
import type { ResolvedOptions } from '../config/resolve-options.js';
import { NoReplicaAvailableError } from '../pool.exceptions.js';
import { ownError } from '../pool/checkout.js';
import type { Eligibility } from './eligibility.js';
import type { ReadYourWrites } from './read-your-writes.js';
import type { ReplicaPicker } from './replica-strategies.js';
import { markWrite, routingStorage, type RoutingScope } from './routing-context.js';

/** Command tags of statements that write nothing; any other statement that fell back to the primary counts as a write. */
const READ_TAGS = new Set(['SELECT', 'SHOW', 'FETCH', 'MOVE']);

/** What replica reads need of the cluster they read from. */
export interface ReadHost {
  readonly name: string;
  /** The write node, where a read no replica can serve falls back. */
  readonly primary: NodePool;
  /** The readers in rotation now. */
  readonly replicas: readonly ReaderState[];
  readonly options: { readonly routing: Pick<ResolvedOptions['routing'], 'consistency' | 'fallbackToPrimary'> };
  /** Takes a reader out of rotation after a failure that means it is gone. */
  ban(r: ReaderState, err: unknown): void;
}

/** Reads on a usable replica: one retry elsewhere after a connection failure, then the primary when allowed. */
export class ReplicaReads {
  constructor(
    private readonly host: ReadHost,
    private readonly picker: ReplicaPicker,
    private readonly eligibility: Eligibility,
    private readonly consistency: ReadYourWrites,
  ) {}

  /** Runs a read on a usable replica (retrying once elsewhere on a connection error), else the primary. */
  read<R extends QueryResultRow>(scope: RoutingScope | undefined, text: QueryInput, values: unknown[] | undefined): Promise<QueryResult<R>> {
    const required = this.consistency.requiredLsn(scope);
    if (required !== undefined && typeof required !== 'bigint') {
      return required.then((lsn) => this.readAt<R>(lsn, text, values));
    }
    return this.readAt<R>(required, text, values);
  }

  readAt<R extends QueryResultRow>(required: bigint | undefined, text: QueryInput, values: unknown[] | undefined): Promise<QueryResult<R>> {
    const first = this.#pick(required, undefined);
    if (first === undefined) {
      if (required !== undefined && this.consistency.refreshable(required)) {
        return this.consistency.refreshReplay(required).then(() => this.#readOn<R>(this.#pick(required, undefined), required, text, values));
      }
      return this.#onPrimary<R>(required, text, values, undefined);
    }
    return this.#readOn<R>(first, required, text, values);
  }

  /** Lends `fn` a replica client for reads that must see `required` (the same retry and fallback as `read`). */
  async withClient<T>(fn: (client: PoolClient) => Promise<T> | T, required: bigint | undefined): Promise<T> {
    const host = this.host;
    let node: NodePool | undefined;
    let client: PoolClient | undefined;
    let failed: ReaderState | undefined;
    let failure: unknown;
    for (let attempt = 0; attempt < 2 && client === undefined; attempt++) {
      let r = this.#pick(required, failed);
      if (r === undefined && attempt === 0 && required !== undefined && this.consistency.refreshable(required)) {
        await this.consistency.refreshReplay(required);
        r = this.#pick(required, undefined);
      }
      if (r === undefined) break;
      r.node.counters.routedReads++;
      if (attempt > 0) r.node.counters.retries++;
      try {
        client = await r.node.acquire();
        node = r.node;
      } catch (err) {
        if (!retryElsewhere(err)) throw err;
        if (leavesRotation(err)) host.ban(r, err);
        failed = r;
        failure = err;
      }
    }
    if (client === undefined || node === undefined) {
      const counters = host.primary.counters;
      if (host.replicas.length !== 0) {
        if (!this.#mayUsePrimary(required)) throw this.#noReplica(required, failure);
        counters.fallbacks++;
        if (failure !== undefined) counters.retries++;
      } else if (!host.options.routing.fallbackToPrimary) {
        throw new NoReplicaAvailableError(host.name, this.eligibility.explain(host.replicas, required));
      }
      counters.routedReads++;
      node = host.primary;
      client = await node.acquire();
    }
    const scope = node === host.primary && host.options.routing.consistency === 'read-your-writes' ? routingStorage.getStore() : undefined;
    let error: unknown;
    try {
      return await fn(client);
    } catch (err) {
      error = err;
      throw node.role === 'replica' ? this.#explain(err, node) : err;
    } finally {
      node.release(client, ownError(client, error));
      // On the primary, what `fn` ran may have written (a forgotten readOnly): it counts for read-your-writes.
      if (scope !== undefined) markWrite(scope, host.name);
    }
  }

  #pick(required: bigint | undefined, exclude: ReaderState | undefined): ReaderState | undefined {
    return this.picker.pick(this.host.replicas, this.eligibility, required, exclude);
  }

  #readOn<R extends QueryResultRow>(replica: ReaderState | undefined, required: bigint | undefined, text: QueryInput, values: unknown[] | undefined): Promise<QueryResult<R>> {
    if (replica === undefined) return this.#onPrimary<R>(required, text, values, undefined);
    replica.node.counters.routedReads++;
    return replica.node.query<R>(text, values).catch((err: unknown) => this.#retryRead<R>(err, replica, required, text, values));
  }

  /** After `failed` was found gone or changing role (`retryElsewhere`): one more replica, then the primary. */
  async #retryRead<R extends QueryResultRow>(
    err: unknown,
    failed: ReaderState,
    required: bigint | undefined,
    text: QueryInput,
    values: unknown[] | undefined,
  ): Promise<QueryResult<R>> {
    if (!retryElsewhere(err)) throw this.#explain(err, failed.node);
    if (leavesRotation(err)) this.host.ban(failed, err);
    // An endpoint (a load balancer) hands the retry a new connection, to a server that answers.
    const next = this.#pick(required, failed.node.config.endpoint ? undefined : failed);
    if (next === undefined) return this.#onPrimary<R>(required, text, values, err);
    next.node.counters.retries++;
    next.node.counters.routedReads++;
    try {
      return await next.node.query<R>(text, values);
    } catch (err2) {
      if (!retryElsewhere(err2)) throw this.#explain(err2, next.node);
      if (leavesRotation(err2)) this.host.ban(next, err2);
      return this.#onPrimary<R>(required, text, values, err2);
    }
  }

  /** A read no replica can serve: on the primary when allowed, else `NoReplicaAvailableError`. */
  #onPrimary<R extends QueryResultRow>(required: bigint | undefined, text: QueryInput, values: unknown[] | undefined, failure: unknown): Promise<QueryResult<R>> {
    const host = this.host;
    const primary = host.primary;
    const counters = primary.counters;
    if (host.replicas.length !== 0) {
      if (!this.#mayUsePrimary(required)) return Promise.reject(this.#noReplica(required, failure));
      counters.fallbacks++;
      if (failure !== undefined) counters.retries++;
    } else if (!host.options.routing.fallbackToPrimary) {
      return Promise.reject(new NoReplicaAvailableError(host.name, this.eligibility.explain(host.replicas, required)));
    }
    counters.routedReads++;
    const scope = routingStorage.getStore();
    if (scope === undefined || host.options.routing.consistency !== 'read-your-writes') return primary.query<R>(text, values);
    // A write sent as a read (a forgotten @ReadOnly()) succeeds here: it counts for read-your-writes.
    return primary.query<R>(text, values).then(
      (res) => {
        if (!READ_TAGS.has((res as { command?: string }).command as string)) markWrite(scope, host.name);
        return res;
      },
      (err: unknown) => {
        if (breaksConnection(err) && !neverSent(err)) markWrite(scope, host.name);
        throw err;
      },
    );
  }

  #noReplica(required: bigint | undefined, failure: unknown): NoReplicaAvailableError {
    const err = new NoReplicaAvailableError(this.host.name, this.eligibility.explain(this.host.replicas, required));
    if (failure !== undefined) Object.defineProperty(err, 'cause', { value: failure, configurable: true, writable: true });
    return err;
  }

  /**
   * `fallbackToPrimary`, or a read-your-writes read that a live replica cannot serve yet only
   * because it has not replayed the write: consistency then beats `fallbackToPrimary: false`.
   */
  #mayUsePrimary(required: bigint | undefined): boolean {
    if (this.host.options.routing.fallbackToPrimary) return true;
    if (required === undefined) return false;
    const now = Date.now();
    return this.host.replicas.some((r) => this.eligibility.usable(r, undefined, now));
  }

  #explain(err: unknown, node: NodePool): unknown {
    if (isReadOnlyViolation(err) && err instanceof Error && !err.message.includes('read replica')) {
      err.message +=
        ` — Cannot write on read replica "${this.host.name}/${node.name}" because the statement ran in a @ReadOnly() scope, ` +
        'withClient({ readOnly: true }) or db.replica, and replicas only accept reads; nothing was written. ' +
        'Please make sure that methods which write are not decorated with @ReadOnly(), or send the statement through db.primary.';
    }
    return err;
  }
}
