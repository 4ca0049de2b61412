import type { PoolCluster } from './pool-cluster.js';
import { allClusters } from './cluster-registry.js';

export interface SizingReport {
  address: string;
  maxConnections: number;
  /** Sum of `max` of every pool of this process on that server. */
  poolMaxSum: number;
  instances: number;
  /** poolMaxSum × instances. */
  demand: number;
  /** 80% of max_connections. */
  budget: number;
  /** Largest per-pool max that keeps demand within budget. */
  suggestedMax: number;
  ok: boolean;
}

/**
 * Compares what the pools of this process (× `instances`) may open on each server of `cluster`
 * with 80% of the server's `max_connections`, and warns with a suggested max when they exceed it.
 */
export async function adviseSizing(cluster: PoolCluster): Promise<SizingReport[]> {
  const reports: SizingReport[] = [];
  const everyNode = allClusters().flatMap((c) => c.nodes);
  const byAddress = new Map<string, typeof cluster.primary>();
  for (const node of cluster.nodes) if (!byAddress.has(node.config.address)) byAddress.set(node.config.address, node);
  for (const [address, node] of byAddress) {
    let maxConnections: number;
    try {
      const res = await node.systemQuery<{ max_connections: string }>('SHOW max_connections');
      maxConnections = Number(res.rows[0]?.max_connections);
    } catch {
      continue;
    }
    if (!Number.isFinite(maxConnections) || maxConnections <= 0) continue;
    const onServer = everyNode.filter((n) => n.config.address === address && !n.ended);
    const poolMaxSum = onServer.reduce((sum, n) => sum + n.config.max, 0);
    const instances = cluster.options.instances;
    const demand = poolMaxSum * instances;
    const budget = Math.floor(maxConnections * 0.8);
    const suggestedMax = Math.max(1, Math.floor(budget / (instances * Math.max(1, onServer.length))));
    const report = { address, maxConnections, poolMaxSum, instances, demand, budget, suggestedMax, ok: demand <= budget };
    reports.push(report);
    if (!report.ok) {
      cluster.logger.warn(
        `Pool sizing: ${onServer.length} pool(s) on ${address} may open ${poolMaxSum} connections × ${instances} instance(s) = ${demand}, ` +
          `above 80% of max_connections (${budget} of ${maxConnections}). Suggested max per pool: ${suggestedMax} ` +
          `(or put PgBouncer in front, or raise max_connections).`,
      );
    }
  }
  return reports;
}
