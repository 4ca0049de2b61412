import type { ReaderState } from './reader-state.js';
import type { ResolvedOptions } from '../config/resolve-options.js';
import { PoolError } from '../pool.exceptions.js';
import type { ReplicaCandidate, ReplicaSelector } from '../pool.interfaces.js';
import type { Eligibility } from './eligibility.js';

/** The configured `routing.strategy` over the replicas in rotation, with its own round-robin position. */
export class ReplicaPicker {
  #rr = 0;
  constructor(
    private readonly database: string,
    private readonly strategy: ResolvedOptions['routing']['strategy'],
  ) {}

  /** A replica of `replicas` that `eligibility` finds usable for `required`, skipping `exclude`. */
  pick(replicas: readonly ReaderState[], eligibility: Eligibility, required: bigint | undefined, exclude: ReaderState | undefined): ReaderState | undefined {
    const n = replicas.length;
    if (n === 0) return undefined;
    const now = Date.now();
    const strategy = this.strategy;
    if (strategy === 'round-robin') {
      for (let i = 0; i < n; i++) {
        const r = replicas[(this.#rr + i) % n]!;
        if (r !== exclude && eligibility.usable(r, required, now)) {
          this.#rr = (this.#rr + i + 1) % n;
          return r;
        }
      }
      return undefined;
    }
    if (strategy === 'random') {
      const start = Math.floor(Math.random() * n);
      for (let i = 0; i < n; i++) {
        const r = replicas[(start + i) % n]!;
        if (r !== exclude && eligibility.usable(r, required, now)) return r;
      }
      return undefined;
    }
    if (strategy === 'weighted') {
      let best: ReaderState | undefined;
      let total = 0;
      for (const r of replicas) {
        if (r === exclude || !eligibility.usable(r, required, now)) continue;
        const w = r.node.config.weight;
        r.current += w;
        total += w;
        if (best === undefined || r.current > best.current) best = r;
      }
      if (best !== undefined) best.current -= total;
      return best;
    }
    if (strategy === 'least-busy') {
      let best: ReaderState | undefined;
      let bestLoad = Infinity;
      for (let i = 0; i < n; i++) {
        const r = replicas[(this.#rr + i) % n]!;
        if (r === exclude || !eligibility.usable(r, required, now)) continue;
        const load = r.node.inUse + r.node.waiting;
        if (load < bestLoad) {
          best = r;
          bestLoad = load;
        }
      }
      this.#rr = (this.#rr + 1) % n;
      return best;
    }
    return this.#pickWith(strategy, replicas, eligibility, required, exclude, now);
  }

  #pickWith(
    selector: ReplicaSelector,
    replicas: readonly ReaderState[],
    eligibility: Eligibility,
    required: bigint | undefined,
    exclude: ReaderState | undefined,
    now: number,
  ): ReaderState | undefined {
    const states: ReaderState[] = [];
    const candidates: ReplicaCandidate[] = [];
    for (const r of replicas) {
      if (r === exclude || !eligibility.usable(r, required, now)) continue;
      const s = r.node.state();
      states.push(r);
      candidates.push({ name: r.node.name, weight: r.node.config.weight, inUse: s.inUse, waiting: s.waiting, idle: s.idle, total: s.total, lagMs: r.lagMs });
    }
    if (candidates.length === 0) return undefined;
    const chosen = selector(candidates);
    if (chosen === undefined || chosen === null) return undefined;
    let i = candidates.indexOf(chosen);
    if (i === -1) i = candidates.findIndex((c) => c.name === (chosen as { name?: unknown }).name);
    if (i === -1) {
      throw new PoolError(
        `Cannot route a read on database "${this.database}" because the routing.strategy function returned ${describe(chosen)}, which is not one of the candidates it was given ` +
          `(${candidates.map((c) => c.name).join(', ')}). Please make sure that it returns one of its candidates, or undefined to use the primary.`,
      );
    }
    return states[i];
  }
}

function describe(value: unknown): string {
  if (value !== null && typeof value === 'object') {
    const name = (value as { name?: unknown }).name;
    return typeof name === 'string' ? `an object named ${JSON.stringify(name)}` : 'an object';
  }
  return `${JSON.stringify(value)} (${typeof value})`;
}
