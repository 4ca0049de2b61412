import type { PoolClient, QueryResult, QueryResultRow } from 'pg';
import { neverSent } from '../errors/sql-state.js';
import { isSingleStatement, type NodePool, type QueryInput } from '../pool/node-pool.js';
import { markWrite, type RoutingScope } from '../routing/routing-context.js';
import type { Topology } from './topology.js';
import type { Rerun, WriteHold } from './write-hold.js';

/** What the write path needs from its database; `PoolCluster` is one. */
export interface WritePathHost {
  readonly name: string;
  readonly topology: Topology;
  readonly options: { readonly routing: { readonly consistency: string } };
}

/** Which failures prove a held write did not run: a single statement may also have been terminated (57P01). */
function rerunOf(text: QueryInput): Rerun {
  const single = typeof text === 'string' || typeof (text as { text?: unknown } | null)?.text === 'string' ? isSingleStatement(text) : false;
  return single ? 'terminated' : 'refused';
}

/**
 * Statements and transactions sent to the write node: through the write hold while the primary is
 * changing, straight to the write node otherwise, each remembered by the scope for read-your-writes
 * once it settled (unless it never reached the server).
 */
export class WritePath {
  constructor(
    private readonly host: WritePathHost,
    private readonly hold: WriteHold,
  ) {}

  /**
   * Runs a statement on the primary and remembers the write for read-your-writes once it settled,
   * unless it was refused before it reached the server (open breaker, acquire timeout, connect failure).
   */
  write<R extends QueryResultRow = any>(scope: RoutingScope | undefined, text: QueryInput, values?: unknown[]): Promise<QueryResult<R>> {
    const startedAt = Date.now();
    const hold = this.hold;
    const tracked = scope !== undefined && this.host.options.routing.consistency === 'read-your-writes';
    const send = (node: NodePool): Promise<QueryResult<R>> => {
      node.counters.routedWrites++;
      return hold.watch(node.query<R>(text, values));
    };
    if (hold.changing) {
      const held = hold.run(startedAt, send, rerunOf(text));
      return tracked ? this.#tracked(scope, held) : held;
    }
    // The usual path: the statement goes to the write node now, and one handler pair on the
    // driver's promise does what the hold, the role check and read-your-writes need (each of their
    // links would cost a promise, and a turn of the microtask queue, per statement).
    const topology = this.host.topology;
    let node: NodePool;
    try {
      node = topology.requireWriter();
    } catch (err) {
      return Promise.reject(err);
    }
    const discovering = topology.discovering;
    if (!discovering && !tracked) return send(node);
    const changes = hold.changes;
    node.counters.routedWrites++;
    return node.query<R>(text, values).then(
      tracked
        ? (res) => {
            markWrite(scope, this.host.name);
            return res;
          }
        : undefined,
      (err: unknown) => {
        if (discovering) hold.writeFailed(err);
        const again = hold.recover(startedAt, rerunOf(text), node, changes, err, send);
        return tracked ? this.#tracked(scope, again) : again;
      },
    );
  }

  /** `write` for read-your-writes: the scope remembers the write once it settled, unless it never reached the server. */
  #tracked<R extends QueryResultRow>(scope: RoutingScope, sent: Promise<QueryResult<R>>): Promise<QueryResult<R>> {
    return sent.then(
      (res) => {
        markWrite(scope, this.host.name);
        return res;
      },
      (err: unknown) => {
        if (!neverSent(err)) markWrite(scope, this.host.name);
        throw err;
      },
    );
  }

  /**
   * Takes a client of the write node and sends `begin` on it; while the primary is changing, waits
   * for it (`failover.holdWritesMs`): nothing of the transaction ran before its BEGIN succeeded.
   */
  begin(begin: (node: NodePool) => Promise<PoolClient>): Promise<{ node: NodePool; client: PoolClient }> {
    return this.hold.run(
      Date.now(),
      (node) => {
        node.counters.routedWrites++;
        return begin(node).then(
          (client) => ({ node, client }),
          (err: unknown) => {
            this.hold.writeFailed(err);
            throw err;
          },
        );
      },
      'unsent',
    );
  }
}
