import { Injectable } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { ClusterRegistry } from '../core/cluster-registry.js';
import { isConnectionError } from '../errors/sql-state.js';
import type { NodePool } from '../pool/node-pool.js';

/** A ping's statement deadline lies just past the check's timeout, so the check reports its own timeout first. */
const PING_GRACE_MS = 50;
import type { ReaderState } from '../routing/reader-state.js';
import type { PoolCluster } from '../core/pool-cluster.js';
import { DEFAULT_DATABASE } from '../pool.constants.js';
import { PoolConfigurationError, PoolError } from '../pool.exceptions.js';
import { field, resolveSection, type Section, type SectionValues } from '../config/option.js';
import { HEALTH_CHECK_OPTIONS, PING_CHECK_OPTIONS } from '../config/schema.health.js';
import {
  DEFAULT_HEALTH_KEY,
  NODE_DOWN,
  PING_TIMEOUT,
  POOLS_CLOSED,
  PRIMARY_IN_RECOVERY,
  REPLICAS_DEGRADED,
  REPLICAS_SHORT,
  TERMINUS_MISSING,
  UNKNOWN_DATABASE,
  UNKNOWN_NODE,
} from './health.constants.js';
import type {
  DatabaseHealth,
  HealthCheckFailure,
  NodeHealth,
  NodePingHealth,
  PoolHealthCheckOptions,
  PoolHealthResult,
  PoolPingCheckOptions,
} from './health.interfaces.js';

type Details = Record<string, unknown>;
type PingDetails = NodePingHealth | HealthCheckFailure;
type CheckDetails = DatabaseHealth | HealthCheckFailure;

/** The part of Terminus' `HealthIndicatorService` (11 and 12) this indicator uses. */
interface IndicatorSession {
  up(data: Details): Record<string, Details>;
  down(data: Details): Record<string, Details>;
}
interface IndicatorService {
  check(key: string): IndicatorSession;
}
type IndicatorServiceClass = new () => IndicatorService;

let indicatorServiceClass: Promise<IndicatorServiceClass> | undefined;

function reasonOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Loads `@nestjs/terminus` (an optional peer) the first time an indicator runs. */
function loadIndicatorServiceClass(): Promise<IndicatorServiceClass> {
  indicatorServiceClass ??= import('@nestjs/terminus').then(
    (mod: Record<string, unknown>) => {
      const found = mod.HealthIndicatorService ?? (mod.default as Record<string, unknown> | undefined)?.HealthIndicatorService;
      if (typeof found !== 'function') throw new PoolError(TERMINUS_MISSING('it has no HealthIndicatorService; version 11 or newer is needed'));
      return found as IndicatorServiceClass;
    },
    (err: unknown) => {
      throw new PoolError(TERMINUS_MISSING(reasonOf(err)));
    },
  );
  return indicatorServiceClass;
}

class InvalidHealthOption extends Error {}

const PING_TIMED_OUT = Symbol('ping timed out');

function withTimeout<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expiry = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(PING_TIMED_OUT), ms);
    timer.unref();
  });
  return Promise.race([work, expiry]).finally(() => clearTimeout(timer));
}

function round2(ms: number): number {
  return Math.round(ms * 100) / 100;
}

/** A `check()` / `pingCheck()` option, named as the indicator's (its error becomes the `down` message). */
function healthOptions<S extends Section>(method: string, section: S, options: unknown): SectionValues<S> {
  const label = (path: string) => `PoolHealthIndicator.${method}() option \`${path || 'options'}\``;
  return resolveSection(section, options, field('', label));
}

/** Terminus builds `{ [key]: { ...details, status } }`; this gives it the precise type. */
function keyed<Key extends string, D>(result: Record<string, Details>): PoolHealthResult<Key, D> {
  return result as unknown as PoolHealthResult<Key, D>;
}

function withoutStatus<T extends { status: string }>(health: T): Omit<T, 'status'> {
  const { status: _status, ...rest } = health;
  return rest;
}

/**
 * Terminus health indicator for the pools of a database: `check()` pings the primary and every
 * replica in parallel, `pingCheck()` one node. Each node reports its latency, pool counts,
 * breaker state and, for replicas, lag and ban. Never throws for an unhealthy database: every
 * failure (including a timeout) is a `down` result, which Terminus turns into a 503.
 */
@Injectable()
export class PoolHealthIndicator {
  #service: IndicatorService | undefined;

  constructor(
    private readonly moduleRef: ModuleRef,
    private readonly registry: ClusterRegistry,
  ) {}

  /**
   * Pings one node (`SELECT pg_is_in_recovery()` through its pool): `up` when it answers in time
   * (and, for the primary, is not a standby), else `down` with the reason.
   */
  async pingCheck<const Key extends string>(key: Key, options?: PoolPingCheckOptions): Promise<PoolHealthResult<Key, PingDetails>> {
    const session = (await this.#indicatorService()).check(key);
    const database = this.#databaseName(options);
    try {
      const { node: nodeName, timeoutMs } = healthOptions('pingCheck', PING_CHECK_OPTIONS, options);
      const cluster = this.#cluster(database);
      const target = this.#findNode(cluster, nodeName);
      const health = await this.#probe(cluster, target.node, timeoutMs, target.replica);
      const details = { database: cluster.name, node: target.node.name, ...withoutStatus(health) };
      return keyed<Key, PingDetails>(health.status === 'up' ? session.up(details) : session.down(details));
    } catch (err) {
      return keyed<Key, PingDetails>(session.down({ database, message: this.#failureMessage(err) }));
    }
  }

  /**
   * Checks the primary and every replica. `down` when the primary is down or fewer replicas are
   * healthy than `requireReplicas` asks; a replica down otherwise keeps it `up` with `degraded: true`.
   */
  async check<const Key extends string = typeof DEFAULT_HEALTH_KEY>(
    key: Key = DEFAULT_HEALTH_KEY as Key,
    options?: PoolHealthCheckOptions,
  ): Promise<PoolHealthResult<Key, CheckDetails>> {
    const session = (await this.#indicatorService()).check(key);
    const database = this.#databaseName(options);
    try {
      const { timeoutMs, requireReplicas } = healthOptions('check', HEALTH_CHECK_OPTIONS, options);
      const cluster = this.#cluster(database);
      const required = requireReplicas === true ? cluster.replicas.length : requireReplicas === false ? 0 : requireReplicas;
      const [primary, ...replicas] = await Promise.all([
        this.#probe(cluster, cluster.primary, timeoutMs, undefined),
        ...cluster.replicas.map((r) => this.#probe(cluster, r.node, timeoutMs, r)),
      ]);
      const nodes: Record<string, NodeHealth> = { [cluster.primary.name]: primary! };
      const unhealthy: string[] = [];
      cluster.replicas.forEach((r, i) => {
        const health = replicas[i]!;
        nodes[r.node.name] = health;
        if (health.status !== 'up' || health.inRotation !== true) unhealthy.push(r.node.name);
      });
      const healthy = cluster.replicas.length - unhealthy.length;
      const topology = cluster.topology.snapshot();
      let message: string | undefined;
      if (primary!.status !== 'up') message = primary!.message;
      else if (!topology.writable) message = cluster.topology.unavailable().message;
      else if (healthy < required) message = REPLICAS_SHORT(healthy, cluster.replicas.length, required);
      const up = message === undefined;
      if (up && topology.fenced.length > 0) message = `Split brain: ${topology.fenced.join(', ')} also answer(s) as a primary and are fenced (no reads, no writes); ${topology.primary} takes the writes.`;
      else if (up && unhealthy.length > 0) message = REPLICAS_DEGRADED(unhealthy);
      const details: Omit<DatabaseHealth, 'status'> = {
        database: cluster.name,
        degraded: unhealthy.length > 0 || topology.fenced.length > 0,
        ...(message === undefined ? {} : { message }),
        replicas: { total: cluster.replicas.length, healthy, required },
        nodes,
        topology,
      };
      return keyed<Key, CheckDetails>(up ? session.up(details) : session.down(details));
    } catch (err) {
      return keyed<Key, CheckDetails>(session.down({ database, message: this.#failureMessage(err) }));
    }
  }

  async #indicatorService(): Promise<IndicatorService> {
    if (this.#service !== undefined) return this.#service;
    const ServiceClass = await loadIndicatorServiceClass();
    let shared: IndicatorService | undefined;
    try {
      shared = this.moduleRef.get(ServiceClass, { strict: false });
    } catch {
      shared = undefined;
    }
    this.#service = shared ?? new ServiceClass();
    return this.#service;
  }

  #databaseName(options: unknown): string {
    const given = (options as { database?: unknown } | null | undefined)?.database;
    return typeof given === 'string' && given.trim() !== '' ? given : DEFAULT_DATABASE;
  }

  #cluster(database: string): PoolCluster {
    const cluster = this.registry.get(database);
    if (cluster === undefined) throw new InvalidHealthOption(UNKNOWN_DATABASE(database));
    if (cluster.closed) throw new InvalidHealthOption(POOLS_CLOSED(database));
    return cluster;
  }

  #findNode(cluster: PoolCluster, name: string): { node: NodePool; replica: ReaderState | undefined } {
    if (name === 'primary' || name === cluster.primary.name) return { node: cluster.primary, replica: undefined };
    const replica = cluster.replicas.find((r) => r.node.name === name);
    if (replica !== undefined) return { node: replica.node, replica };
    // A node out of rotation after a failover (fenced, or a former primary that is not back yet).
    const other = cluster.nodes.find((n) => n.name === name);
    if (other === undefined) throw new InvalidHealthOption(UNKNOWN_NODE(cluster.name, name, cluster.nodes.map((n) => n.name)));
    return { node: other, replica: undefined };
  }

  #failureMessage(err: unknown): string {
    if (err instanceof InvalidHealthOption || err instanceof PoolConfigurationError) return err.message;
    return `Health check failed unexpectedly: ${reasonOf(err)}`;
  }

  async #probe(cluster: PoolCluster, node: NodePool, timeoutMs: number, replica: ReaderState | undefined): Promise<NodeHealth> {
    const started = performance.now();
    let failure: string | undefined;
    const hung = cluster.hungReason(node);
    try {
      if (hung !== undefined) throw new Error(`the node stopped answering: ${hung}`);
      const recovery = await withTimeout(this.#ping(node, timeoutMs), timeoutMs);
      if (node.role === 'primary' && recovery) failure = PRIMARY_IN_RECOVERY;
    } catch (err) {
      failure = err === PING_TIMED_OUT ? PING_TIMEOUT(timeoutMs) : cluster.scrub(reasonOf(err));
    }
    const latencyMs = round2(performance.now() - started);
    const status = node.status();
    const health: NodeHealth = {
      status: failure === undefined ? 'up' : 'down',
      role: node.role,
      address: node.config.address,
      latencyMs,
      pool: { total: status.total, idle: status.idle, inUse: status.inUse, waiting: status.waiting, min: status.min, max: status.max },
      breaker: status.breaker,
    };
    if (failure !== undefined) health.message = NODE_DOWN(node.role, node.name, node.config.address, failure);
    if (status.breakerRetryAt !== undefined) health.breakerRetryAt = new Date(status.breakerRetryAt).toISOString();
    if (replica !== undefined) {
      const lagMs = replica.reportedLagMs;
      health.replicationLagMs = lagMs === undefined || failure !== undefined ? null : round2(lagMs);
      health.banned = replica.bannedUntil !== 0;
      if (health.banned) {
        health.bannedUntil = new Date(replica.bannedUntil).toISOString();
        health.banReason = cluster.scrub(replica.banReason);
      }
      health.inRotation = failure === undefined && cluster.usable(replica, undefined, Date.now());
    }
    return health;
  }

  /** `SELECT pg_is_in_recovery()` through the node's pool, once more on a connection error (a stale idle client). */
  async #ping(node: NodePool, timeoutMs: number): Promise<boolean> {
    const sql = 'SELECT pg_is_in_recovery() AS recovery';
    // The library's managed path: past the check's own timeout the connection is destroyed, not pooled.
    const bound = timeoutMs + PING_GRACE_MS;
    try {
      return (await node.systemQuery<{ recovery: boolean }>(sql, undefined, bound)).rows[0]?.recovery === true;
    } catch (err) {
      if (!isConnectionError(err)) throw err;
      return (await node.systemQuery<{ recovery: boolean }>(sql, undefined, bound)).rows[0]?.recovery === true;
    }
  }
}
