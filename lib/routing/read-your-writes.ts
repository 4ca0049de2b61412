import type { ResolvedOptions } from '../config/resolve-options.js';
import type { NodePool } from '../pool/node-pool.js';
import { DEFAULT_DATABASE } from '../pool.constants.js';
import { TransactionInProgressError } from '../pool.exceptions.js';
import type { Eligibility } from './eligibility.js';
import type { ReaderState } from './reader-state.js';
import { formatConsistencyToken, parseLsn, routingStorage, type RoutingScope, type RoutingSession } from './routing-context.js';
import { recordEnd } from './wal-history.js';

const REPLAY_SQL = 'SELECT pg_last_wal_replay_lsn()::text AS replay';
/**
 * The insert position, which covers every record made so far, commits included
 * (the write position does not while `synchronous_commit` is off).
 */
const PRIMARY_LSN_SQL = 'SELECT pg_current_wal_insert_lsn()::text AS lsn';
const REFRESH_TIMEOUT_MS = 1000;

/** What read-your-writes needs of the cluster whose reads it keeps consistent. */
export interface ConsistencyHost {
  readonly name: string;
  /** The write node, asked for its WAL position. */
  readonly primary: NodePool;
  /** The readers in rotation now. */
  readonly replicas: readonly ReaderState[];
  readonly options: { readonly routing: Pick<ResolvedOptions['routing'], 'consistency'> };
}

/** The WAL position a scope's reads must see, and the cheap re-check of replicas that look behind it. */
export class ReadYourWrites {
  constructor(
    private readonly host: ConsistencyHost,
    private readonly eligibility: Eligibility,
  ) {}

  /** The WAL position reads of this scope must see (`undefined`: any), resolving a pending write lazily. */
  requiredLsn(scope: RoutingScope | undefined): bigint | undefined | Promise<bigint | undefined> {
    if (scope === undefined || this.host.replicas.length === 0) return undefined;
    return this.#sessionLsn(scope.session, 'read');
  }

  /**
   * The token a client carries to a later request so its reads see this scope's writes: the
   * primary WAL position after them (see `parseConsistencyToken` for the form). `undefined` when
   * the scope wrote nothing and carried no token. Outside any scope, or with
   * `consistency: 'eventual'` (writes are not tracked), it is the primary's current position.
   */
  async token(): Promise<string | undefined> {
    const name = this.host.name;
    const scope = routingStorage.getStore();
    const tx = scope?.tx?.get(name);
    if (tx !== undefined && tx.state !== 'ended') throw new TransactionInProgressError(name);
    const lsn =
      scope === undefined || this.host.options.routing.consistency !== 'read-your-writes' ? await this.#currentPrimaryLsn() : await this.#sessionLsn(scope.session, 'token');
    return lsn === undefined ? undefined : formatConsistencyToken(name, lsn, DEFAULT_DATABASE);
  }

  /** True when a replica is in rotation and only its last known replay position keeps it from serving `required`. */
  refreshable(required: bigint): boolean {
    const now = Date.now();
    return this.host.replicas.some((r) => (r.replayLsn === undefined || r.replayLsn < required) && this.eligibility.usable(r, undefined, now));
  }

  /**
   * The cheap check of read-your-writes: asks the replicas that look behind `required` for their
   * replay position now (one `SELECT` each, shared by concurrent reads) instead of sending the
   * read to the primary on the lag monitor's older figure.
   */
  refreshReplay(required: bigint): Promise<void> {
    const now = Date.now();
    const checks: Promise<void>[] = [];
    for (const r of this.host.replicas) {
      if ((r.replayLsn !== undefined && r.replayLsn >= required) || !this.eligibility.usable(r, undefined, now)) continue;
      r.refreshing ??= r.node.systemQuery<{ replay: string | null }>(REPLAY_SQL, undefined, REFRESH_TIMEOUT_MS)
        .then(
          (res) => {
            const replay = parseLsn(res.rows[0]?.replay);
            if (replay !== undefined && (r.replayLsn === undefined || replay > r.replayLsn)) r.replayLsn = replay;
          },
          () => undefined,
        )
        .finally(() => {
          r.refreshing = undefined;
        });
      checks.push(r.refreshing);
    }
    return Promise.all(checks).then(() => undefined);
  }

  /**
   * The highest of: the carried token for this database, and the primary position after the
   * session's writes. For a read, a primary that cannot tell its position does not fail the read:
   * see `#unverifiedLsn`; for a token it does.
   */
  #sessionLsn(session: RoutingSession, purpose: 'read' | 'token'): bigint | undefined | Promise<bigint | undefined> {
    const name = this.host.name;
    const carried = session.minLsn?.get(name);
    const version = session.writes?.get(name);
    const seen = session.seen?.get(name);
    if (version !== undefined && (seen === undefined || seen.version < version)) {
      const fetched = this.#currentPrimaryLsn().then((lsn) => {
        const latest = session.seen?.get(name);
        const written = latest !== undefined && latest.lsn > lsn ? latest.lsn : lsn;
        (session.seen ??= new Map()).set(name, { version: latest !== undefined && latest.version > version ? latest.version : version, lsn: written });
        return carried !== undefined && carried > written ? carried : written;
      });
      if (purpose === 'token') return fetched;
      return fetched.catch(() => {
        const known = session.seen?.get(name)?.lsn;
        return this.#unverifiedLsn(carried !== undefined && (known === undefined || carried > known) ? carried : known);
      });
    }
    if (seen === undefined) return carried;
    return carried !== undefined && carried > seen.lsn ? carried : seen.lsn;
  }

  /**
   * The primary's position could not be fetched (down, unreachable, no connection in time): the read
   * asks for the highest position the session knows when a usable replica has reached it, else for
   * the position of the usable replica that replayed the most. Counted in the primary's `rywUnverified`.
   */
  #unverifiedLsn(known: bigint | undefined): bigint | undefined {
    this.host.primary.counters.rywUnverified++;
    const now = Date.now();
    let furthest: bigint | undefined;
    for (const r of this.host.replicas) {
      if (r.replayLsn === undefined || !this.eligibility.usable(r, undefined, now)) continue;
      if (known !== undefined && r.replayLsn >= known) return known;
      if (furthest === undefined || r.replayLsn > furthest) furthest = r.replayLsn;
    }
    return furthest;
  }

  async #currentPrimaryLsn(): Promise<bigint> {
    const res = await this.host.primary.query<{ lsn: string }>(PRIMARY_LSN_SQL);
    return recordEnd(parseLsn(res.rows[0]?.lsn) ?? 0n);
  }
}
