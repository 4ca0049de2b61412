import type { NodePool } from '../pool/node-pool.js';
import type { PoolCluster } from '../core/pool-cluster.js';
import type { AlertKind, AlertLevel, PoolEvent } from '../pool.events.js';
import type { ResolvedAlertOptions } from './metrics.options.js';
import type { MonitoredDatabase } from './monitored-database.js';

type AlertEvent = Extract<PoolEvent, { type: 'alert' }>;

/** What the monitor needs from a database; `PoolCluster` is one. */
export interface AlertHost extends MonitoredDatabase {
  readonly options: { readonly alerts: ResolvedAlertOptions };
  readonly logger: { warn(message: string): void; error(message: string): void };
}

function percent(ratio: number): string {
  return `${Math.round(ratio * 100)}%`;
}

/**
 * Checks every node of a database against the alert thresholds. Reads four counters per node
 * per check (no per-query work); each (node, kind) fires at most once per cooldown.
 */
export class AlertMonitor {
  readonly #lastFired = new Map<string, number>();
  #timer: NodeJS.Timeout | undefined;

  constructor(private readonly host: AlertHost) {}

  start(): this {
    const options = this.host.options.alerts;
    if (!options.enabled || this.#timer !== undefined) return this;
    this.#timer = setInterval(() => {
      if (this.host.closed) this.stop();
      else this.check();
    }, options.intervalMs);
    this.#timer.unref();
    return this;
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Evaluates every node now; returns the alerts that fired. */
  check(now = Date.now()): AlertEvent[] {
    const options = this.host.options.alerts;
    if (!options.log && !this.host.emitting) return [];
    const fired: AlertEvent[] = [];
    for (const node of this.host.nodes) {
      if (node.ended) continue;
      const state = node.state();
      const ratio = state.max > 0 ? state.inUse / state.max : 0;
      const location = `"${this.host.name}/${node.name}"`;
      const counts = `in use ${state.inUse}/${state.max}, idle ${state.idle}, waiting ${state.waiting}`;
      if (state.waiting > options.waitingThreshold) {
        this.#fire(fired, now, node, 'pool-waiting', 'warning', state.waiting, options.waitingThreshold, state,
          `Pool ${location} has ${state.waiting} callers waiting for a connection (threshold ${options.waitingThreshold}; ${counts}). Please make sure that clients are released quickly, or raise max.`);
      }
      if (ratio > options.usageCritical) {
        this.#fire(fired, now, node, 'pool-usage-critical', 'critical', ratio, options.usageCritical, state,
          `Pool ${location} is ${percent(ratio)} in use (critical above ${percent(options.usageCritical)}; ${counts}).`);
      } else if (ratio > options.usageWarn) {
        this.#fire(fired, now, node, 'pool-usage-high', 'warning', ratio, options.usageWarn, state,
          `Pool ${location} is ${percent(ratio)} in use (warning above ${percent(options.usageWarn)}; ${counts}).`);
      }
      if (state.idle === 0 && state.waiting > 0) {
        this.#fire(fired, now, node, 'pool-exhausted', 'critical', state.waiting, 0, state,
          `Pool ${location} has no idle connection while ${state.waiting} callers wait (${counts}).`);
      }
    }
    return fired;
  }

  #fire(
    fired: AlertEvent[],
    now: number,
    node: NodePool,
    alert: AlertKind,
    level: AlertLevel,
    value: number,
    threshold: number,
    state: AlertEvent['state'],
    message: string,
  ): void {
    const key = `${node.name}\u0000${alert}`;
    const last = this.#lastFired.get(key);
    if (last !== undefined && now - last < this.host.options.alerts.cooldownMs) return;
    this.#lastFired.set(key, now);
    const event: AlertEvent = {
      type: 'alert', database: this.host.name, node: node.name, role: node.role, at: now,
      alert, level, message, value, threshold, state,
    };
    fired.push(event);
    if (this.host.options.alerts.log) {
      if (level === 'critical') this.host.logger.error(message);
      else this.host.logger.warn(message);
    }
    if (this.host.emitting) this.host.emit(event);
  }
}

/** Starts the alert timer of a database; it stops by itself once the database is closed. */
export function watchPoolAlerts(cluster: PoolCluster): AlertMonitor {
  return new AlertMonitor(cluster).start();
}
