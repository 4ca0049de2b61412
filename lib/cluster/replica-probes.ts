import type { Logger } from '@nestjs/common';
import type { PoolEvent } from '../pool.events.js';
import type { LagMonitor } from './lag-monitor.js';
import type { ReaderState } from '../routing/reader-state.js';

/** The longest ban of an endpoint. */
const ENDPOINT_BAN_MS = 1000;

/** What the probes need of the cluster whose replicas they watch. */
export interface ProbeHost {
  readonly name: string;
  readonly closed: boolean;
  readonly logger: Pick<Logger, 'log' | 'warn'>;
  /** Someone listens to `emit` (events are only built then). */
  readonly emitting: boolean;
  emit(event: PoolEvent): void;
  /** `message` without the configured secrets. */
  scrub(message: string): string;
}

/** The background probe that puts a banned replica back in rotation once it answers and its lag is measured. */
export class ReplicaProbes {
  constructor(
    private readonly host: ProbeHost,
    private readonly lag: LagMonitor,
    private readonly banMs: number,
  ) {}

  /**
   * How long a failure takes `r` out of rotation: `replicaBanMs`, but for an endpoint (a load
   * balancer with other servers behind it, `endpoint: true`) at most 1 s: probed again soon.
   */
  banMsFor(r: ReaderState): number {
    return r.node.config.endpoint ? Math.min(this.banMs, ENDPOINT_BAN_MS) : this.banMs;
  }

  /** Probes `r` when its ban runs out (at the earliest in 50 ms). */
  schedule(r: ReaderState): void {
    this.#arm(r, Math.max(50, r.bannedUntil - Date.now()));
  }

  /** `undefined` when a statement on `r` (on a new connection when its idle ones are gone) answers, else the error. */
  async answers(r: ReaderState): Promise<unknown> {
    let failure: unknown;
    // Twice: the first may take another pooled session to the server that went away.
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        await r.node.systemQuery('SELECT 1', undefined, this.lag.timeoutMs);
        return undefined;
      } catch (err) {
        failure = err;
      }
    }
    return failure;
  }

  /** Probes `r` at once (a hung node answers again). */
  probeNow(r: ReaderState): void {
    this.#arm(r, 0);
  }

  #arm(r: ReaderState, delayMs: number): void {
    clearTimeout(r.probe);
    r.probe = setTimeout(() => void this.#probe(r), delayMs);
    r.probe.unref();
  }

  async #probe(r: ReaderState): Promise<void> {
    const host = this.host;
    if (host.closed) return;
    try {
      await r.node.systemQuery('SELECT 1', undefined, this.lag.timeoutMs);
      await this.lag.samplePrimary();
      await this.lag.measure(r);
      if (host.closed) return;
      r.bannedUntil = 0;
      r.banReason = '';
      r.current = 0;
      r.node.resumeRefill();
      host.logger.log(`Replica "${host.name}/${r.node.name}" (${r.node.config.address}) is healthy again and back in rotation.`);
      if (host.emitting) host.emit({ type: 'replica-restored', database: host.name, node: r.node.name, role: 'replica', at: Date.now() });
    } catch (err) {
      if (host.closed) return;
      r.bannedUntil = Date.now() + this.banMsFor(r);
      r.banReason = host.scrub((err as Error)?.message ?? String(err));
      this.schedule(r);
    }
  }
}
