import pg from 'pg';
import type { QueryResult } from 'pg';
import type { ResolvedPreparedStatements } from '../config/prepared-statements.options.js';
import { PreparedStatementInvalidatedError } from '../pool.exceptions.js';
import { CACHED_STATEMENT_PREFIX } from './session-reset.js';


/**
 * A connection retires (at its next release) once it dropped this many times `cacheSize` names:
 * node-postgres remembers every name it parsed on a client for the client's life, and a dropped
 * name is never reused, so churn would otherwise grow that memory without bound.
 */
const DROPPED_NAMES_PER_SLOT = 4;

/**
 * Process-wide, so a name is never used twice on any connection (node-postgres skips the parse of a
 * name it has seen). The prefix is the one the session reset on release keeps.
 */
let nameSequence = 0;

function nextName(): string {
  nameSequence = (nameSequence + 1) % Number.MAX_SAFE_INTEGER;
  return `${CACHED_STATEMENT_PREFIX}${nameSequence.toString(36)}`;
}

export interface StatementCounters {
  preparedHits: number;
  preparedMisses: number;
  preparedEvictions: number;
  preparedInvalidations: number;
}

/** Where a statement ran, for the error a transaction gets. */
export interface StatementSite {
  readonly database: string;
  readonly name: string;
}

/** node-postgres' callback shape: an error (`null` or `undefined` when none), then the result. */
type Callback = (err: Error | null | undefined, res: QueryResult | undefined) => void;
type QueryFn = (config: unknown, values: unknown, cb: (err: Error | null | undefined, res: QueryResult) => void) => void;

interface Plan {
  readonly key: string;
  readonly name: string;
  /** The caller's query config, when it gave one (its other fields go along), else `undefined` (a text). */
  readonly base: Record<string, unknown> | undefined;
  readonly values: unknown[];
  /** Statements to deallocate before this one is sent (evicted, or left over). */
  readonly drop: readonly string[];
}

/** The query config a plan is sent as: the caller's, under the generated name. */
export function planConfig(plan: Plan): Record<string, unknown> {
  return plan.base === undefined ? { name: plan.name, text: plan.key, values: plan.values } : { ...plan.base, name: plan.name, values: plan.values };
}

/**
 * A statement of the cache sent as node-postgres' own `Query` built from its text, so that pg
 * does not copy a config object on every execution (it copies each one it is given, property
 * descriptor by property descriptor: about 1 µs per statement), named after construction: `name`
 * is the `Query` config field pg reads to send the statement as a prepared one.
 */
class NamedQuery extends pg.Query {
  declare name: string;
  constructor(name: string, text: string, values: unknown[], callback: Callback) {
    super(text, values, callback as ConstructorParameters<typeof pg.Query>[2]);
    this.name = name;
  }
}

const NOTHING: readonly string[] = [];

function quoteName(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/**
 * A plan the server no longer has or can no longer use: 26000 (the statement is gone: DISCARD
 * ALL, DEALLOCATE ALL, another server behind the same address) or 0A000 "cached plan must not
 * change result type" (the table's columns changed).
 */
export function isInvalidatedPlan(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown } | null;
  if (e === null || typeof e !== 'object') return false;
  if (e.code === '26000') return true;
  return e.code === '0A000' && typeof e.message === 'string' && e.message.includes('cached plan must not change result type');
}

/**
 * One connection's automatic prepared statements (pgjdbc's `prepareThreshold` + bounded cache):
 * the texts seen with values and how often, and the ones prepared, least recently used first.
 * It never reads or writes node-postgres' own state: a name is prepared through the public
 * `client.query({ name, text, values })` (or pg's own `Query` with that name), and a name that was deallocated or invalidated is never
 * sent again on this connection (node-postgres would skip its parse), so the two never disagree.
 */
export class StatementCache {
  /** text → generated name, least recently used first (Map order). */
  readonly #prepared = new Map<string, string>();
  /** text → sends seen while not prepared, oldest first; bounded by `cacheSize`. */
  readonly #seen = new Map<string, number>();
  /** Names whose `DEALLOCATE` could not run yet (the transaction had failed): sent before the next preparation. */
  readonly #pending: string[] = [];
  #dropped = 0;
  /** The key last moved to (or added at) the most recent end of `#prepared`. */
  #recent: string | undefined = undefined;

  constructor(
    readonly settings: ResolvedPreparedStatements,
    readonly counters: StatementCounters,
    /** Called once the connection dropped enough names to be retired at its next release. */
    readonly retire: () => void,
  ) {}

  /** Statements prepared on this connection now (as far as the cache knows). */
  get size(): number {
    return this.#prepared.size;
  }

  /**
   * What to send for a caller's statement: a plan with the generated name (hit, or the send that
   * prepares it), or `undefined` to send it as given (not eligible, or seen too few times yet).
   */
  plan(text: unknown, values: unknown): Plan | undefined {
    let key: string;
    let base: Record<string, unknown> | undefined;
    if (typeof text === 'string') key = text;
    else {
      if (text === null || typeof text !== 'object') return undefined;
      const config = text as Record<string, unknown>;
      // `types` as result parsers (Prisma's adapter) is client-side only; as parameter type OIDs it would be fixed by the first parse.
      if (config.name !== undefined || Array.isArray(config.types) || config.callback !== undefined || config.queryMode === 'simple' || typeof config.text !== 'string') return undefined;
      key = config.text;
      base = config;
      values ??= config.values;
    }
    if (!Array.isArray(values) || values.length === 0) return undefined;
    const found = this.#prepared.get(key);
    if (found !== undefined) {
      // Moved to the most recent end unless it is there already (the same statement again, the usual case).
      if (key !== this.#recent) {
        this.#prepared.delete(key);
        this.#prepared.set(key, found);
        this.#recent = key;
      }
      this.counters.preparedHits++;
      return { key, name: found, base, values, drop: NOTHING };
    }
    this.counters.preparedMisses++;
    const uses = (this.#seen.get(key) ?? 0) + 1;
    if (uses < this.settings.threshold) {
      if (uses === 1 && this.#seen.size >= this.settings.cacheSize) this.#seen.delete(this.#seen.keys().next().value!);
      this.#seen.set(key, uses);
      return undefined;
    }
    this.#seen.delete(key);
    const drop = this.#makeRoom();
    const name = nextName();
    this.#prepared.set(key, name);
    this.#recent = key;
    return { key, name, base, values, drop };
  }

  /**
   * The server refused the plan: forget it. Returns the name to deallocate (a 0A000 statement still
   * exists on the server), or `undefined`.
   */
  invalidated(plan: Plan, err: unknown): string | undefined {
    if (this.#prepared.get(plan.key) !== plan.name) return undefined;
    this.#prepared.delete(plan.key);
    this.counters.preparedInvalidations++;
    this.#noteDropped();
    return (err as { code?: unknown }).code === '26000' || this.settings.viaPgBouncer ? undefined : plan.name;
  }

  /** A `DEALLOCATE` failed (the session's transaction had failed): the statement still exists, send it again later. */
  deallocationFailed(name: string): void {
    this.#pending.push(name);
  }

  /** Names to deallocate so one more statement fits: left-over ones first, then the least recently used. */
  #makeRoom(): readonly string[] {
    const drop = this.#pending.splice(0);
    while (this.#prepared.size >= this.settings.cacheSize) {
      const [oldestKey, oldestName] = this.#prepared.entries().next().value!;
      this.#prepared.delete(oldestKey);
      this.counters.preparedEvictions++;
      this.#noteDropped();
      drop.push(oldestName);
    }
    // Behind PgBouncer (protocol-level support) PgBouncer bounds the server side; DEALLOCATE would not reach it.
    return this.settings.viaPgBouncer ? NOTHING : drop;
  }

  #noteDropped(): void {
    if (++this.#dropped === this.settings.cacheSize * DROPPED_NAMES_PER_SLOT) this.retire();
  }
}

/** Sends `DEALLOCATE name`; a failure other than "does not exist" leaves it to the next preparation. */
function deallocate(client: pg.Client, cache: StatementCache, name: string, then: (() => void) | undefined): void {
  (client.query as unknown as QueryFn).call(client, `DEALLOCATE ${quoteName(name)}`, undefined, (err) => {
    if (err && (err as { code?: unknown }).code !== '26000') cache.deallocationFailed(name);
    then?.();
  });
}

/**
 * Sends one statement of a caller on `client` (the one path of `db.query`, transactions, lent
 * clients and the routed pool). With a cache it may go as a prepared statement; a plan the
 * server refuses is dropped and, outside a transaction, the statement runs once more as sent by
 * the caller. Inside a transaction the statement fails with `PreparedStatementInvalidatedError`
 * (never run again silently).
 */
export function sendThroughCache(client: pg.Client, cache: StatementCache | undefined, site: StatementSite | undefined, text: unknown, values: unknown, cb: Callback): void {
  const query = client.query as unknown as QueryFn;
  const plan = cache?.plan(text, values);
  if (plan === undefined) {
    // node-postgres throws here for arguments it rejects (a null query): the caller decides what that means.
    query.call(client, text, values, cb);
    return;
  }
  // Queued right away, in order, ahead of the statement: statements sent on the client after this
  // one still run after it, and the client's queue stays empty on the usual one-at-a-time path.
  for (const name of plan.drop) deallocate(client, cache!, name, undefined);
  const answered: Callback = (err, res) => {
    if (!err || !isInvalidatedPlan(err)) return cb(err, res);
    // Read when the error arrives: the status of the session when this statement started.
    const inTransaction = client.getTransactionStatus() !== 'I';
    const stale = cache!.invalidated(plan, err);
    const next = () => {
      if (inTransaction) return cb(new PreparedStatementInvalidatedError(site!.database, site!.name, err), undefined);
      query.call(client, text, values, cb);
    };
    // The session answers this failure before it takes anything else: one statement at a time from here.
    if (stale === undefined) next();
    else deallocate(client, cache!, stale, next);
  };
  // A text on node-postgres' own client goes as its Query; a config (its other fields along) or another client class as a config.
  if (plan.base === undefined && client instanceof pg.Client) client.query(new NamedQuery(plan.name, plan.key, plan.values, answered));
  else query.call(client, planConfig(plan), undefined, answered);
}
