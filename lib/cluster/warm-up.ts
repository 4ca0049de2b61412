import type { NodePool } from '../pool/node-pool.js';
import { PoolConfigurationError } from '../pool.exceptions.js';
import type { ReaderState } from '../routing/reader-state.js';
import { START_UP, type Topology } from './topology.js';

/** What warming up needs of the cluster. */
export interface WarmUpHost {
  readonly topology: Topology;
  /** The write node. */
  readonly primary: NodePool;
  /** The readers in rotation now. */
  readonly replicas: readonly ReaderState[];
  /** Takes a reader out of rotation; a probe puts it back once it answers. */
  ban(r: ReaderState, err: unknown): void;
}

/**
 * Opens every pool up to `min`. The primary must come up or start-up fails; a replica that
 * cannot be reached is banned and probed in the background instead. `all` is every configured
 * node's reader state, the configured primary first.
 */
export async function warmUp(host: WarmUpHost, all: readonly ReaderState[]): Promise<void> {
  if (host.topology.discovering) return warmUpAndDiscover(host, all);
  await Promise.all([
    host.primary.warmUp(),
    ...host.replicas.map((r) =>
      r.node.warmUp().catch((err: unknown) => {
        host.ban(r, err);
      }),
    ),
  ]);
}

/**
 * With role discovery: every node warms up, then every node is asked its role. Start-up fails
 * only when no node answers as the primary (with the configured primary's error when it was down).
 */
async function warmUpAndDiscover(host: WarmUpHost, all: readonly ReaderState[]): Promise<void> {
  const topology = host.topology;
  let primaryError: unknown;
  const configured = all[0]!.node;
  await Promise.all(
    all.map((r) =>
      r.node.warmUp().catch((err: unknown) => {
        if (r.node === configured) primaryError = err;
        else host.ban(r, err);
      }),
    ),
  );
  await topology.check(START_UP);
  const duplicate = topology.duplicates[0];
  if (duplicate !== undefined) {
    const [first, second, identity] = duplicate;
    const entry = (n: NodePool) => (n.config.role === 'primary' ? 'primary' : `replicas[${n.config.index}]`);
    throw new PoolConfigurationError(
      `option \`${entry(second)}\``,
      'a server that no other entry reaches',
      `${second.name} (${second.config.address}), the same server as ${first.name} (${first.config.address}): system ${identity}`,
      'Please make sure that every server is listed once (a multi-host primary already names every node), or mark load balancers with endpoint: true.',
    );
  }
  if (primaryError !== undefined && topology.writer === configured) throw primaryError;
  if (topology.lostSince !== 0) throw topology.unavailable();
}
