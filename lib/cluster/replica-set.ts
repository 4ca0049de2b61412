import type { ResolvedOptions } from '../config/resolve-options.js';
import type { NodePool } from '../pool/node-pool.js';
import { Eligibility } from '../routing/eligibility.js';
import { ReaderState } from '../routing/reader-state.js';
import { ReplicaPicker } from '../routing/replica-strategies.js';
import type { LagMonitor } from './lag-monitor.js';
import { ReplicaProbes, type ProbeHost } from './replica-probes.js';

/** What the replica set needs of the cluster that owns it. */
export type ReplicaSetHost = ProbeHost;

/**
 * The reader state of every node of one database and the readers in rotation now: which of them
 * may serve a read (eligibility), which one does (the configured strategy), their bans and the
 * probes that put them back.
 */
export class ReplicaSet {
  readonly eligibility: Eligibility;
  readonly picker: ReplicaPicker;
  readonly #probes: ReplicaProbes;
  /** Every configured node's state, in configuration order. */
  readonly all: readonly ReaderState[];
  #readers: readonly ReaderState[];
  /** Endpoints whose failed session is being checked on a new connection before a ban. */
  readonly #verifying = new Set<ReaderState>();

  constructor(
    private readonly host: ReplicaSetHost,
    nodes: readonly NodePool[],
    routing: ResolvedOptions['routing'],
    lag: LagMonitor,
  ) {
    this.all = nodes.map((n) => new ReaderState(n));
    this.#readers = this.all.slice(1);
    this.eligibility = new Eligibility(routing);
    this.picker = new ReplicaPicker(host.name, routing.strategy);
    this.#probes = new ReplicaProbes(host, lag, routing.replicaBanMs);
    for (const r of this.all) r.staleAfterMs = routing.lagCheckIntervalMs * 2 + lag.timeoutMs;
  }

  /** The nodes in read rotation now: those the role checks found in recovery. */
  get readers(): readonly ReaderState[] {
    return this.#readers;
  }

  /** The reader state of `node` while it is in rotation, else `undefined`. */
  readerOf(node: NodePool): ReaderState | undefined {
    return this.#readers.find((r) => r.node === node);
  }

  /**
   * The readers become the nodes `isReader` accepts. A node joining them has no lag figure against
   * the current primary yet: unknown until it is measured.
   */
  follow(isReader: (node: NodePool) => boolean): void {
    const before = this.#readers;
    this.#readers = this.all.filter((s) => isReader(s.node));
    for (const r of this.#readers) {
      if (before.includes(r)) continue;
      r.lagMs = undefined;
      r.lagBytes = undefined;
      r.replayLsn = undefined;
    }
  }

  /** True when `r` may serve a read that must see `required`. */
  usable(r: ReaderState, required: bigint | undefined, now: number): boolean {
    return this.eligibility.usable(r, required, now);
  }

  /** A usable reader chosen by the configured strategy, skipping `exclude`. */
  pick(required: bigint | undefined, exclude: ReaderState | undefined): ReaderState | undefined {
    return this.picker.pick(this.#readers, this.eligibility, required, exclude);
  }

  /** Takes a reader out of rotation after a connection-class failure until a probe succeeds. */
  ban(r: ReaderState, err: unknown): void {
    if (this.host.closed) return;
    if (r.node.config.endpoint && r.bannedUntil === 0) {
      // One session of a load balancer dropped: the endpoint stays in rotation unless a new connection through it fails too.
      if (this.#verifying.has(r)) return;
      this.#verifying.add(r);
      void this.#probes.answers(r).then((failure) => {
        this.#verifying.delete(r);
        if (failure !== undefined) this.#banNow(r, failure);
      });
      return;
    }
    this.#banNow(r, err);
  }

  #banNow(r: ReaderState, err: unknown): void {
    const host = this.host;
    if (host.closed) return;
    const reason = host.scrub((err as Error)?.message ?? String(err));
    const first = r.bannedUntil === 0;
    const banMs = this.#probes.banMsFor(r);
    r.bannedUntil = Date.now() + banMs;
    r.banReason = reason;
    if (!first) return;
    r.node.counters.bans++;
    r.node.pauseRefill();
    r.node.evictAll();
    host.logger.warn(`Replica "${host.name}/${r.node.name}" (${r.node.config.address}) banned for ${banMs}ms: ${reason}`);
    if (host.emitting) host.emit({ type: 'replica-banned', database: host.name, node: r.node.name, role: 'replica', at: Date.now(), untilMs: r.bannedUntil, reason });
    this.#probes.schedule(r);
  }

  /** A banned reader is probed at once (its node answers again) instead of when its ban runs out. */
  probeNow(r: ReaderState): void {
    if (r.bannedUntil !== 0) this.#probes.probeNow(r);
  }

  /** Stops every pending probe. */
  close(): void {
    for (const r of this.all) clearTimeout(r.probe);
  }
}
