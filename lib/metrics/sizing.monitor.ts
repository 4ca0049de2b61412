import type { NodePool } from '../pool/node-pool.js';
import type { SizingReport } from '../core/sizing-advisor.js';
import type { PoolEvent, SizingAdviceKind } from '../pool.events.js';
import { LoadWindow, type LoadSummary } from './load.window.js';
import type { ResolvedLoadSizingOptions } from './sizing.options.js';
import type { MonitoredDatabase } from './monitored-database.js';

type SizingEvent = Extract<PoolEvent, { type: 'sizing-advice' }>;

/**
 * `warming-up` until the window covers half its length; `out-of-rotation` while the node was banned
 * or its breaker open within the window (its low load says nothing about its size); `ok` when
 * neither warning applies.
 */
export type SizingState = 'warming-up' | 'ok' | 'out-of-rotation' | SizingAdviceKind;

/** The `sizing` object of a node in `GET /metrics/db-pool`. */
export interface NodeSizing extends LoadSummary {
  min: number;
  max: number;
  headroom: number;
  /** max(ceil(load × (1 + headroom)), peakInUse, min, 1), capped by `budgetMax`; `null` before the first sample. */
  suggestedMax: number | null;
  /** The per-pool max the start-up sizing advisor's budget (80% of max_connections) allows; `null` when it did not run. */
  budgetMax: number | null;
  /** The load called for more than `budgetMax`. */
  limitedByBudget: boolean;
  advice: SizingState;
}

/** What the monitor needs from a database; `PoolCluster` is one. */
export interface SizingHost extends MonitoredDatabase {
  readonly options: { readonly loadSizing: ResolvedLoadSizingOptions };
  readonly logger: { warn(message: string): void };
  /** Replica ban state (`PoolCluster` has it): a banned node is out of rotation. */
  readonly replicas?: ReadonlyArray<{ readonly node: NodePool; readonly bannedUntil: number }>;
}

/** Turns one window summary into a suggested max and an advice. Pure: the unit specs drive it. */
export function adviseFromLoad(
  summary: LoadSummary,
  pool: { min: number; max: number },
  options: ResolvedLoadSizingOptions,
  budgetMax: number | null,
  slotMs: number,
  outOfRotation = false,
): NodeSizing {
  let suggestedMax: number | null = null;
  let limitedByBudget = false;
  const load = summary.busiest?.load ?? 0;
  if (summary.samples > 0) {
    const wanted = Math.ceil(Number((load * (1 + options.headroom)).toFixed(6)));
    suggestedMax = Math.max(1, pool.min, summary.peakInUse, wanted);
    if (budgetMax !== null && suggestedMax > budgetMax) {
      limitedByBudget = true;
      suggestedMax = Math.max(1, budgetMax);
    }
  }
  const seenEnough = summary.samples >= 2 && summary.coveredMs >= options.windowMs / 2;
  const fullWindow = summary.coveredMs >= Math.max(options.windowMs - slotMs, slotMs / 2);
  let advice: SizingState = seenEnough ? 'ok' : 'warming-up';
  if (seenEnough && summary.waitingShare >= options.saturatedShare) advice = 'saturated';
  else if (seenEnough && outOfRotation) advice = 'out-of-rotation';
  else if (
    fullWindow &&
    summary.samples >= 2 &&
    summary.peakWaiting === 0 &&
    Math.max(summary.peakInUse, Math.ceil(load)) <= Math.floor(pool.max * options.overProvisionedRatio) &&
    suggestedMax !== null &&
    suggestedMax < pool.max
  ) {
    advice = 'over-provisioned';
  }
  return { ...summary, min: pool.min, max: pool.max, headroom: options.headroom, suggestedMax, budgetMax, limitedByBudget, advice };
}

function seconds(ms: number): string {
  return `${Math.round(ms / 1000)}s`;
}

function percent(ratio: number): string {
  return `${Math.round(ratio * 100)}%`;
}

function describeLoad(s: NodeSizing): string {
  const b = s.busiest;
  if (b === null) return 'no load measured';
  return `${b.arrivalPerSec}/s × (${b.meanUsageMs}ms held + ${b.meanAcquireMs}ms waited) = ${b.load} connections in the busiest ${seconds(b.spanMs)}`;
}

function adviceMessage(location: string, s: NodeSizing): string {
  const suggested = s.suggestedMax!;
  if (s.advice === 'saturated') {
    const budget = s.limitedByBudget
      ? ` (capped at the max_connections budget of ${s.budgetMax} per pool; put PgBouncer in front, or raise max_connections)`
      : '';
    return (
      `Pool ${location} is saturated: callers waited for a connection at ${percent(s.waitingShare)} of the samples of the last ${seconds(s.coveredMs)} ` +
      `(peak ${s.peakWaiting} waiting, acquire p95 ${s.acquireMs.p95}ms, max ${s.max}). Load: ${describeLoad(s)}. ` +
      `Suggested max: ${suggested}${budget}. Please make sure that clients are released quickly, or raise max.`
    );
  }
  return (
    `Pool ${location} looks over-provisioned: at most ${s.peakInUse} of its ${s.max} connections were in use in the last ${seconds(s.coveredMs)} and no caller waited. ` +
    `Load: ${describeLoad(s)}. Suggested max: ${suggested}. Please make sure that max fits the load: unused connections still count against the server's max_connections.`
  );
}

interface NodeWatch {
  readonly node: NodePool;
  readonly window: LoadWindow;
  readonly budgetMax: number | null;
  readonly onAcquire: () => void;
  /** Last sample at which the node was banned or its breaker open; `-Infinity` when never. */
  lastOutAt: number;
}

const watched = new WeakMap<NodePool, { monitor: SizingMonitor; watch: NodeWatch }>();

/**
 * Samples every node of a database every `loadSizing.sampleIntervalMs` into its `LoadWindow`,
 * derives a suggested max, and warns (log + `sizing-advice` event) when a pool is persistently
 * saturated or over-provisioned, each (node, advice) at most once per `cooldownMs`. It advises
 * only: it never changes a pool's size.
 */
export class SizingMonitor {
  readonly #watches: NodeWatch[] = [];
  readonly #lastFired = new Map<string, number>();
  #timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly host: SizingHost,
    budgets: ReadonlyMap<string, number> = new Map(),
    now = Date.now(),
  ) {
    const options = host.options.loadSizing;
    for (const node of host.nodes) {
      const window = new LoadWindow(options.windowMs, options.buckets);
      const watch: NodeWatch = { node, window, budgetMax: budgets.get(node.config.address) ?? null, onAcquire: () => window.noteInUse(node.inUse), lastOutAt: -Infinity };
      window.sample(node, now);
      // pg.Pool's own 'acquire' event (a public one): the exact peak between two samples.
      node.pool.on('acquire', watch.onAcquire);
      this.#watches.push(watch);
      watched.set(node, { monitor: this, watch });
    }
  }

  start(): this {
    if (this.#timer !== undefined) return this;
    this.#timer = setInterval(() => {
      if (this.host.closed) this.stop();
      else this.sample();
    }, this.host.options.loadSizing.sampleIntervalMs);
    this.#timer.unref();
    return this;
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    for (const w of this.#watches) {
      w.node.pool.off('acquire', w.onAcquire);
      if (watched.get(w.node)?.monitor === this) watched.delete(w.node);
    }
  }

  /** Takes one sample of every node and returns the warnings that fired. */
  sample(now = Date.now()): SizingEvent[] {
    const fired: SizingEvent[] = [];
    for (const w of this.#watches) {
      if (w.node.ended) continue;
      w.window.sample(w.node, now);
      if (!this.#inRotation(w.node)) w.lastOutAt = now;
      const sizing = this.#sizing(w, now);
      if (sizing.advice === 'saturated' || sizing.advice === 'over-provisioned') this.#fire(fired, now, w.node, sizing);
    }
    return fired;
  }

  /** The current view of `node` (one of this database's), or `undefined`. */
  sizing(node: NodePool, now = Date.now()): NodeSizing | undefined {
    const w = this.#watches.find((x) => x.node === node);
    return w === undefined ? undefined : this.#sizing(w, now);
  }

  #sizing(w: NodeWatch, now: number): NodeSizing {
    const options = this.host.options.loadSizing;
    const outOfRotation = now - w.lastOutAt < options.windowMs;
    return adviseFromLoad(w.window.summary(now), w.node.config, options, w.budgetMax, w.window.slotMs, outOfRotation);
  }

  #inRotation(node: NodePool): boolean {
    if (!node.available) return false;
    const replica = this.host.replicas?.find((r) => r.node === node);
    return replica === undefined || replica.bannedUntil === 0;
  }

  #fire(fired: SizingEvent[], now: number, node: NodePool, s: NodeSizing): void {
    const options = this.host.options.loadSizing;
    const advice = s.advice as SizingAdviceKind;
    const key = `${node.name}\u0000${advice}`;
    const last = this.#lastFired.get(key);
    if (last !== undefined && now - last < options.cooldownMs) return;
    if (!options.log && !this.host.emitting) return;
    this.#lastFired.set(key, now);
    const message = adviceMessage(`"${this.host.name}/${node.name}"`, s);
    const event: SizingEvent = {
      type: 'sizing-advice', database: this.host.name, node: node.name, role: node.role, at: now,
      advice, message, max: s.max, suggestedMax: s.suggestedMax!, budgetMax: s.budgetMax,
      peakInUse: s.peakInUse, waitingShare: s.waitingShare, load: s.busiest?.load ?? 0,
    };
    fired.push(event);
    if (options.log) this.host.logger.warn(message);
    if (this.host.emitting) this.host.emit(event);
  }
}

/** The sizing view of a node whose database watches its load; `null` otherwise (`loadSizing.enabled: false`). */
export function sizingOf(node: NodePool, now = Date.now()): NodeSizing | null {
  const entry = watched.get(node);
  return entry === undefined ? null : entry.monitor.sizing(node, now) ?? null;
}

/**
 * Starts watching the load of every pool of `host`, with the per-pool budget the start-up sizing
 * advisor found for each server (none when it did not run). Stops by itself once the database is closed.
 */
export function watchPoolLoad(host: SizingHost, reports: readonly SizingReport[]): SizingMonitor | undefined {
  if (!host.options.loadSizing.enabled) return undefined;
  const budgets = new Map(reports.map((r) => [r.address, r.suggestedMax] as const));
  return new SizingMonitor(host, budgets).start();
}
