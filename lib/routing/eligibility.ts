import type { ReaderState } from './reader-state.js';
import type { ResolvedOptions } from '../config/resolve-options.js';
import { formatLsn } from './routing-context.js';

/** Whether a replica may serve a read (bans, breaker, lag limits, read-your-writes), and why not. */
export class Eligibility {
  constructor(private readonly routing: ResolvedOptions['routing']) {}

  /** True when this replica may serve a read that must see `required`. */
  usable(r: ReaderState, required: bigint | undefined, now: number): boolean {
    if (r.bannedUntil !== 0 || !r.node.available) return false;
    const routing = this.routing;
    if (routing.maxReplicationLagMs > 0 && r.lagMs !== undefined && r.lagMs > routing.maxReplicationLagMs) return false;
    if (routing.maxReplicationLagBytes > 0 && r.lagBytes !== undefined && r.lagBytes > routing.maxReplicationLagBytes) return false;
    if (required !== undefined && (r.replayLsn === undefined || r.replayLsn < required)) return false;
    void now;
    return true;
  }

  /** Why no replica of `replicas` served a read that must see `required`, one clause per replica. */
  explain(replicas: readonly ReaderState[], required?: bigint): string {
    if (replicas.length === 0) return 'none is configured';
    const routing = this.routing;
    return replicas
      .map((r) => {
        let why = typeof routing.strategy === 'function' ? 'in rotation, but the routing.strategy function picked none' : 'in rotation';
        if (r.bannedUntil !== 0) why = `banned after a connection failure: ${r.banReason}`;
        else if (!r.node.available) why = 'circuit breaker open';
        else if (routing.maxReplicationLagMs > 0 && r.lagMs !== undefined && r.lagMs > routing.maxReplicationLagMs) {
          why = `lagging ${Math.round(r.lagMs)}ms behind the current primary (maxReplicationLagMs ${routing.maxReplicationLagMs})`;
        } else if (routing.maxReplicationLagBytes > 0 && r.lagBytes !== undefined && r.lagBytes > routing.maxReplicationLagBytes) {
          why = `lagging ${r.lagBytes} bytes behind the current primary (maxReplicationLagBytes ${routing.maxReplicationLagBytes})`;
        } else if (required !== undefined && (r.replayLsn === undefined || r.replayLsn < required)) {
          why = `has not replayed ${formatLsn(required)} yet`;
        }
        // The config slot names the node; where the node's role is no longer the slot's, it is said.
        const name = r.node.role === r.node.config.role ? r.node.name : `${r.node.name} (now a ${r.node.role})`;
        return `${name} ${why}`;
      })
      .join('; ');
  }
}
