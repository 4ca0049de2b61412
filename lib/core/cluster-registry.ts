import { Injectable, type OnApplicationBootstrap } from '@nestjs/common';
import type { ResolvedMetricsOptions } from '../metrics/metrics.options.js';
import { DEFAULT_CONSISTENCY_HEADER } from '../pool.constants.js';
import { PoolError } from '../pool.exceptions.js';
import type { PoolCluster } from './pool-cluster.js';

/** The registries of the applications running in this process, oldest first. */
const live: ClusterRegistry[] = [];

/**
 * The databases of one application, in `PoolModule` import order: one instance per application
 * (provided by the root module), filled by each database's cluster factory and read through
 * dependency injection by the request scope, health, metrics and the sizing advisor.
 */
@Injectable()
export class ClusterRegistry implements OnApplicationBootstrap {
  /** Set once the application started: a registry left by a failed start is only used when no started one has the database. */
  started = false;
  readonly #clusters: { cluster: PoolCluster; order: number }[] = [];
  #all: readonly PoolCluster[] = [];
  #headers: readonly string[] = [DEFAULT_CONSISTENCY_HEADER];
  #sessionContexts = false;
  #metrics: { options: ResolvedMetricsOptions; order: number } | undefined;

  /** Each `PoolModule` import offers its `metrics` options; the first import's are the application's. */
  offerMetrics(options: ResolvedMetricsOptions, order: number): void {
    if (this.#metrics === undefined || order < this.#metrics.order) this.#metrics = { options, order };
  }

  /** The application's `metrics` options (the first `PoolModule` import's). */
  metricsOptions(): ResolvedMetricsOptions | undefined {
    return this.#metrics?.options;
  }

  readonly #claimed = new Set<string>();

  /** Reserves `name` before its pools open, so a second database of that name fails before it connects. */
  claim(name: string): void {
    if (this.#claimed.has(name)) {
      throw new PoolError(
        `Cannot register database "${name}" because this application already has a database of that name. ` +
          `Please make sure that every PoolModule.forRoot() of one application has its own \`name\`.`,
      );
    }
    this.#claimed.add(name);
  }

  /** Gives back a claimed name whose database failed to start. */
  release(name: string): void {
    if (this.get(name) === undefined) this.#claimed.delete(name);
  }

  add(cluster: PoolCluster, order: number): void {
    this.#claimed.add(cluster.name);
    this.#clusters.push({ cluster, order });
    this.#clusters.sort((a, b) => a.order - b.order);
    this.#changed();
    if (!live.includes(this)) live.push(this);
  }

  remove(cluster: PoolCluster): void {
    const i = this.#clusters.findIndex((entry) => entry.cluster === cluster);
    if (i !== -1) this.#clusters.splice(i, 1);
    this.#claimed.delete(cluster.name);
    this.#changed();
    if (this.#clusters.length === 0 && live.includes(this)) live.splice(live.indexOf(this), 1);
  }

  get(name: string): PoolCluster | undefined {
    return this.#clusters.find((entry) => entry.cluster.name === name)?.cluster;
  }

  onApplicationBootstrap(): void {
    this.started = true;
  }

  /** Every database of the application, in import order (closed ones included until shutdown removes them). */
  all(): readonly PoolCluster[] {
    return this.#all;
  }

  /** True when a database derives a session context from each request (`session.fromRequest`). */
  sessionContexts(): boolean {
    return this.#sessionContexts;
  }

  /** The consistency headers the databases read, each once. */
  consistencyHeaders(): readonly string[] {
    return this.#headers;
  }

  #changed(): void {
    this.#all = this.#clusters.map((entry) => entry.cluster);
    this.#headers = this.#all.length === 0 ? [DEFAULT_CONSISTENCY_HEADER] : [...new Set(this.#all.map((c) => c.options.routing.consistencyHeader))];
    // Asked by every request scope: worked out once per change of the databases.
    this.#sessionContexts = this.#all.some((c) => c.options.session.fromRequest !== undefined);
  }
}

/**
 * The database `name` for method decorators, which run outside dependency injection: from the
 * registry of the request's application when there is one, else from the most recently started
 * application that has it (one whose start failed only when no started one has it).
 */
export function findCluster(name: string, registry?: ClusterRegistry, decorator = 'Transactional'): PoolCluster {
  let cluster = registry?.get(name);
  for (let i = live.length - 1; cluster === undefined && i >= 0; i--) if (live[i]!.started) cluster = live[i]!.get(name);
  for (let i = live.length - 1; cluster === undefined && i >= 0; i--) cluster = live[i]!.get(name);
  if (!cluster) {
    throw new PoolError(
      `Cannot run @${decorator}() on database "${name}" because it is not registered. ` +
        `Please make sure that PoolModule.forRoot${name === 'default' ? '' : `({ name: '${name}', … })`} is imported and the application has started.`,
    );
  }
  return cluster;
}

/** Every database of every application in this process (what this process may open on a server). */
export function allClusters(): readonly PoolCluster[] {
  return live.flatMap((registry) => registry.all());
}
