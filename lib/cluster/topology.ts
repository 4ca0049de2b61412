import type { ResolvedOptions } from '../config/resolve-options.js';
import type { NodePool } from '../pool/node-pool.js';
import { PrimaryUnavailableError, type PrimaryCandidate } from '../pool.exceptions.js';
import type { PoolEvent, TopologyRole } from '../pool.events.js';

/**
 * One statement per node and check: its role, and its timeline (the newest of the last
 * checkpoint's and the current one: on a primary the current WAL file's — a fresh promotion shows
 * in the WAL file name before its first checkpoint completes —, on a streaming standby the timeline
 * its WAL receiver receives (visible to roles with pg_read_all_stats, e.g. pg_monitor; otherwise
 * NULL and the checkpoint's is used)).
 */
const ROLE_SQL =
  'SELECT pg_is_in_recovery() AS recovering, (SELECT timeline_id FROM pg_control_checkpoint()) AS checkpoint_timeline, ' +
  "CASE WHEN pg_is_in_recovery() THEN (SELECT received_tli FROM pg_stat_wal_receiver) ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END AS wal_timeline, " +
  // What the server is: its cluster's identifier (shared by its standbys) and the address it answered on.
  "(SELECT system_identifier FROM pg_control_system())::text || ' ' || coalesce(host(inet_server_addr()), 'local') || ':' || coalesce(inet_server_port()::text, '') AS identity";
/** The reason of the first check, run by the cluster's warm-up. */
export const START_UP = 'start-up';
/** While the write node is lost, checks run this often (at most `checkIntervalMs`). */
const FAILOVER_CHECK_MS = 250;

/** What the role checks know about one node. */
export interface NodeTopology {
  role: TopologyRole;
  /** `Date.now()` when the node took its current role. */
  since: number;
  /** When the node last answered a role check; `0` when never. */
  checkedAt: number;
  reachable: boolean;
  /** The node's timeline when it last answered. */
  timeline: number | undefined;
  /** Why it is not reachable / not in rotation; `''` when it is. */
  detail: string;
}

/** The roles as health and `/metrics/db-pool` show them. */
export interface TopologySnapshot {
  /** `false` when `failover.discoverRoles` pins the configured roles. */
  discoverRoles: boolean;
  /** The node that takes the writes (the last one that did while none answers as the primary). */
  primary: string;
  /** `Date.now()` when it took the writes. */
  primarySince: number;
  /** `false` while no node answers as the primary (writes fail with PrimaryUnavailableError). */
  writable: boolean;
  /** Since when no node answers as the primary; `null` while one does. */
  lostSince: number | null;
  /** Nodes answering as primaries on an older timeline (split brain): out of rotation. */
  fenced: string[];
  /** Every node's role, in configuration order. */
  roles: Record<string, { role: TopologyRole; since: number; timeline: number | null; reachable: boolean; detail?: string }>;
}

export interface TopologyHost {
  readonly name: string;
  readonly emitting: boolean;
  emit(event: PoolEvent): void;
  warn(message: string): void;
  log(message: string): void;
  scrub(message: string): string;
  /** The set of readers or the write node changed. */
  topologyChanged(): void;
  /** True while the periodic checks should not open connections (`lazy` and nothing opened yet). */
  idle(): boolean;
}

interface CheckResult {
  readonly node: NodePool;
  readonly ok: boolean;
  readonly recovering: boolean;
  readonly timeline: number | undefined;
  readonly identity: string | undefined;
  readonly error: string;
}

/**
 * The roles of one database's nodes, discovered rather than trusted: which node takes the
 * writes, which read, which is fenced. Checks every node with `pg_is_in_recovery()` at start,
 * periodically, and at once when asked (`check()`). With `discoverRoles` off the configured
 * roles are pinned and nothing is checked.
 */
export class Topology {
  readonly #nodes: readonly NodePool[];
  readonly #state = new Map<NodePool, NodeTopology>();
  readonly #options: ResolvedOptions['failover'];
  #writer: NodePool;
  #writerSince = Date.now();
  /** When the write node was lost (down or in recovery with no other primary); `0` while there is one. */
  #lostSince = 0;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #again = false;
  #nextCheckAt = 0;
  #closed = false;
  #duplicates: ReadonlyArray<readonly [NodePool, NodePool, string]> = [];

  constructor(
    primary: NodePool,
    replicas: readonly NodePool[],
    options: ResolvedOptions['failover'],
    private readonly host: TopologyHost,
  ) {
    this.#nodes = [primary, ...replicas];
    this.#options = options;
    this.#writer = primary;
    const now = Date.now();
    for (const node of this.#nodes) {
      this.#state.set(node, { role: node === primary ? 'primary' : 'replica', since: now, checkedAt: 0, reachable: true, timeline: undefined, detail: '' });
    }
  }

  /** Roles are checked: `discoverRoles` is on and there is another node a failover could pick. */
  get discovering(): boolean {
    return this.#options.discoverRoles && this.#nodes.length > 1;
  }

  /** Every configured node, in configuration order. */
  get nodes(): readonly NodePool[] {
    return this.#nodes;
  }

  /** The node that takes the writes now (the last one that did while it is lost). */
  get writer(): NodePool {
    return this.#writer;
  }

  /** `Date.now()` when the current write node took the writes. */
  get writerSince(): number {
    return this.#writerSince;
  }

  /** `Date.now()` since when no node takes the writes; `0` while one does. */
  get lostSince(): number {
    return this.#lostSince;
  }

  /** Pairs of entries the last check found reaching the same server (`[first, second, identity]`). */
  get duplicates(): ReadonlyArray<readonly [NodePool, NodePool, string]> {
    return this.#duplicates;
  }

  /** True while a role check runs. */
  get checking(): boolean {
    return this.#running !== undefined;
  }

  /** True for a node in read rotation (a replica as far as the checks know). */
  isReader(node: NodePool): boolean {
    return this.#state.get(node)?.role === 'replica';
  }

  roleOf(node: NodePool): TopologyRole {
    return this.#state.get(node)?.role ?? 'unknown';
  }

  stateOf(node: NodePool): Readonly<NodeTopology> | undefined {
    return this.#state.get(node);
  }

  /** Nodes that answer as a primary but are fenced (split brain). */
  get fenced(): NodePool[] {
    return this.#nodes.filter((n) => this.#state.get(n)!.role === 'fenced');
  }

  /**
   * The split brain under way, as the events that announced it (one per fenced node, `at` = when it
   * was fenced): a subscriber that arrives later — e.g. after a split brain found at start — learns of it.
   */
  splitBrainEvents(): PoolEvent[] {
    const fenced = this.fenced;
    if (fenced.length === 0) return [];
    const primaries = [this.#writer, ...fenced].map((n) => ({ node: n.name, timeline: this.#state.get(n)!.timeline }));
    return fenced.map((n) => ({ type: 'split-brain', database: this.host.name, node: n.name, role: n.role, at: this.#state.get(n)!.since, writer: this.#writer.name, primaries }));
  }

  snapshot(): TopologySnapshot {
    const roles: TopologySnapshot['roles'] = {};
    for (const n of this.#nodes) {
      const st = this.#state.get(n)!;
      roles[n.name] = { role: st.role, since: st.since, timeline: st.timeline ?? null, reachable: st.reachable, ...(st.detail ? { detail: st.detail } : {}) };
    }
    return {
      discoverRoles: this.discovering,
      primary: this.#writer.name,
      primarySince: this.#writerSince,
      writable: this.#lostSince === 0,
      lostSince: this.#lostSince === 0 ? null : this.#lostSince,
      fenced: this.fenced.map((n) => n.name),
      roles,
    };
  }

  /** The write node, or a `PrimaryUnavailableError` (thrown) while none answers as the primary. */
  requireWriter(): NodePool {
    if (this.#lostSince === 0) return this.#writer;
    throw this.unavailable();
  }

  unavailable(): PrimaryUnavailableError {
    const tried: PrimaryCandidate[] = this.#nodes.map((n) => {
      const s = this.#state.get(n)!;
      return { node: n.name, address: n.config.address, state: s.reachable ? (s.role === 'fenced' ? `fenced: ${s.detail}` : 'in recovery') : s.detail || 'not reachable' };
    });
    const retryAt = Math.max(this.#nextCheckAt, Date.now());
    return new PrimaryUnavailableError(this.host.name, tried, new Date(this.#lostSince), new Date(retryAt), this.#options.failoverTimeoutMs);
  }

  /** Starts the periodic checks. */
  start(): void {
    if (!this.discovering || this.#closed || this.#timer !== undefined) return;
    this.#schedule();
  }

  /**
   * Checks every node now (a check already running is followed by one more). Resolves when the
   * roles reflect what the nodes answered; never rejects.
   */
  check(reason = 'requested'): Promise<void> {
    if (!this.discovering || this.#closed) return Promise.resolve();
    if (this.#running !== undefined) {
      this.#again = true;
      return this.#running;
    }
    this.#running = this.#run(reason).finally(() => {
      this.#running = undefined;
      if (this.#again && !this.#closed) {
        this.#again = false;
        void this.check('follow-up');
      }
    });
    return this.#running;
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
  }

  #schedule(): void {
    clearTimeout(this.#timer);
    if (this.#closed) return;
    const interval = this.#options.checkIntervalMs;
    const lostFor = this.#lostSince === 0 ? -1 : Date.now() - this.#lostSince;
    const delay = lostFor >= 0 && lostFor <= this.#options.failoverTimeoutMs ? Math.min(FAILOVER_CHECK_MS, interval) : interval;
    this.#nextCheckAt = Date.now() + delay;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      const checked = this.host.idle() ? Promise.resolve() : this.check('periodic');
      void checked.finally(() => this.#timer === undefined && this.#schedule());
    }, delay);
    this.#timer.unref();
  }

  async #run(reason: string): Promise<void> {
    const timeoutMs = this.#options.checkTimeoutMs;
    const results = await Promise.all(this.#nodes.map((node) => this.#ask(node, timeoutMs)));
    if (this.#closed) return;
    this.#apply(results, reason);
    if (this.#timer !== undefined) this.#schedule();
  }

  async #ask(node: NodePool, timeoutMs: number): Promise<CheckResult> {
    try {
      const res = await node.monitorQuery(ROLE_SQL, timeoutMs);
      const row = res.rows[0] as { recovering: boolean; checkpoint_timeline: number | null; wal_timeline: number | null; identity?: string | null } | undefined;
      const timelines = [row?.checkpoint_timeline, row?.wal_timeline].filter((t): t is number => typeof t === 'number');
      return { node, ok: true, recovering: row?.recovering === true, timeline: timelines.length ? Math.max(...timelines) : undefined, identity: row?.identity ?? undefined, error: '' };
    } catch (err) {
      return { node, ok: false, recovering: false, timeline: undefined, identity: undefined, error: this.host.scrub((err as Error)?.message ?? String(err)) };
    }
  }

  #apply(results: readonly CheckResult[], reason: string): void {
    const now = Date.now();
    let changed = false;
    for (const r of results) {
      const s = this.#state.get(r.node)!;
      s.reachable = r.ok;
      if (r.ok) {
        s.checkedAt = now;
        s.timeline = r.timeline;
      }
      s.detail = r.ok ? '' : r.error;
    }
    // Two entries that reach the same server are one server: the second is not a second primary (no false split brain).
    const seen = new Map<string, NodePool>();
    const duplicates: Array<readonly [NodePool, NodePool, string]> = [];
    for (const r of results) {
      if (!r.ok || r.identity === undefined || r.node.config.endpoint) continue;
      const first = seen.get(r.identity);
      if (first === undefined) seen.set(r.identity, r.node);
      else duplicates.push([first, r.node, r.identity]);
    }
    this.#duplicates = duplicates;
    const copies = new Set(duplicates.map((d) => d[1]));
    // A read-only endpoint never takes the writes nor is fenced: the server behind it answered, not the endpoint.
    const primaries = results.filter((r) => r.ok && !r.recovering && !copies.has(r.node) && !(r.node.config.endpoint && r.node.config.role === 'replica'));
    let writer = this.#writer;
    if (primaries.length > 0) {
      // The newest timeline wins; on a tie the current write node keeps the writes, else configuration order.
      const newest = Math.max(...primaries.map((p) => p.timeline ?? 0));
      const best = primaries.filter((p) => (p.timeline ?? 0) === newest);
      writer = (best.find((p) => p.node === this.#writer) ?? best[0]!).node;
    }
    const writerChanged = writer !== this.#writer;
    if (writerChanged) {
      const previous = this.#writer;
      this.#writer = writer;
      this.#writerSince = now;
      writer.setRole('primary');
      changed = true;
      const timeline = this.#state.get(writer)!.timeline;
      this.host.warn(
        `Database "${this.host.name}": ${writer.name} (${writer.config.address}) answers as the primary (timeline ${timeline ?? 'unknown'}) and takes the writes instead of ${previous.name} (${previous.config.address}).`,
      );
      if (this.host.emitting) this.host.emit({ type: 'primary-changed', database: this.host.name, node: writer.name, role: 'primary', at: now, previous: previous.name, timeline });
    }
    // Write node found, or lost.
    const writerResult = results.find((r) => r.node === this.#writer)!;
    const lost = !(writerResult.ok && !writerResult.recovering);
    if (lost && this.#lostSince === 0) {
      this.#lostSince = now;
      changed = true;
      // At start-up the start fails instead (with the primary's own error).
      if (reason !== START_UP) this.host.warn(
        `Database "${this.host.name}": no node answers as the primary (${writerResult.node.name}: ${writerResult.ok ? 'in recovery' : writerResult.error}). ` +
          `Writes fail with PrimaryUnavailableError until one does (checked every ${Math.min(FAILOVER_CHECK_MS, this.#options.checkIntervalMs)}ms for ${this.#options.failoverTimeoutMs}ms, then every ${this.#options.checkIntervalMs}ms).`,
      );
    } else if (!lost && this.#lostSince !== 0) {
      const again = writerChanged ? '' : ' again';
      this.host.log(`Database "${this.host.name}": ${this.#writer.name} (${this.#writer.config.address}) takes the writes${again} after ${now - this.#lostSince}ms without a primary.`);
      this.#lostSince = 0;
      changed = true;
    }
    for (const r of results) {
      const to = copies.has(r.node) ? 'unknown' : this.#roleFor(r);
      if (this.#setRole(r.node, to, reason, now)) changed = true;
    }
    const fenced = primaries.filter((p) => p.node !== this.#writer);
    const list = primaries.map((p) => ({ node: p.node.name, timeline: p.timeline }));
    const writerTimeline = this.#state.get(this.#writer)!.timeline ?? 'unknown';
    for (const p of fenced) {
      const s = this.#state.get(p.node)!;
      s.detail = `answers as a primary on timeline ${p.timeline ?? 'unknown'}, but ${this.#writer.name} is the primary on timeline ${writerTimeline}`;
      if (s.since !== now) continue;
      this.host.warn(
        `Database "${this.host.name}": split brain: ${list.map((l) => `${l.node} (timeline ${l.timeline ?? 'unknown'})`).join(' and ')} answer as primaries. ` +
          `Writes go only to ${this.#writer.name}; ${p.node.name} (${p.node.config.address}) is fenced (no reads, no writes) until it answers as a standby.`,
      );
      if (this.host.emitting) this.host.emit({ type: 'split-brain', database: this.host.name, node: p.node.name, role: p.node.role, at: now, writer: this.#writer.name, primaries: list });
    }
    if (changed) this.host.topologyChanged();
  }

  #roleFor(r: CheckResult): TopologyRole {
    if (r.node === this.#writer) return 'primary';
    // An endpoint keeps its configured role whatever server its check reached.
    if (r.node.config.endpoint) return r.node.config.role === 'replica' ? 'replica' : 'unknown';
    const current = this.#state.get(r.node)!.role;
    if (!r.ok) {
      // A replica that does not answer stays in rotation (bans and probes handle it); a former write node is unknown until it answers.
      return current === 'primary' ? 'unknown' : current;
    }
    return r.recovering ? 'replica' : 'fenced';
  }

  #setRole(node: NodePool, to: TopologyRole, reason: string, now: number): boolean {
    const s = this.#state.get(node)!;
    if (s.role === to) return false;
    const from = s.role;
    s.role = to;
    s.since = now;
    if (to !== 'primary') node.setRole('replica');
    this.host.log(`Database "${this.host.name}": ${node.name} (${node.config.address}) is now ${to} (was ${from}; ${reason} role check).`);
    if (this.host.emitting) this.host.emit({ type: 'node-role-changed', database: this.host.name, node: node.name, role: node.role, at: now, from, to, reason });
    return true;
  }
}
