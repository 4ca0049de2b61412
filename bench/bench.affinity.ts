import { execFileSync } from 'node:child_process';
import os from 'node:os';

/**
 * Keeps the client side (this process, the workers it forks) and the servers (the PostgreSQL
 * servers of the bench cluster, every process they have forked or will fork, PgBouncer) on
 * separate CPUs for the run, so the two sides of a comparison do not also compete with the
 * servers for a core the scheduler hands out differently from one slice to the next. On this
 * 2-core machine that is what narrows a parity figure's interval: identical pools measured
 * against each other land within about ±3 % of 1.000× pinned, and ±5-10 % unpinned.
 *
 * Uses `taskset` (util-linux) and `ss` (iproute2). Where either is missing, the machine has
 * one CPU, or a process may not be moved (not root), the run goes on unpinned and says so.
 */
export interface Pinning {
  /** What the report prints, e.g. "client CPU 0, servers CPU 1" or "none (…why)". */
  readonly description: string;
  /** False when the run could not pin at all (`description` says why): `pin()` and `restore()` do nothing then. */
  readonly available: boolean;
  /** Pins again after `restore()` (the servers' processes forked since included). Safe to call twice. */
  pin(): void;
  /** Gives the servers and this process every CPU again. Safe to call twice. */
  restore(): void;
}

const UNPINNED = { available: false, pin: () => undefined, restore: () => undefined };

function run(command: string, args: string[]): string {
  return execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000 });
}

/** The pid listening on each loopback port (`ss -Hltnp 'sport = :PORT'`). */
function listeners(ports: readonly number[]): number[] {
  const pids = new Set<number>();
  for (const port of ports) {
    const out = run('ss', ['-Hltnp', `sport = :${port}`]);
    for (const match of out.matchAll(/pid=(\d+)/g)) pids.add(Number(match[1]));
  }
  return [...pids];
}

/** `roots` and every process below them, from one `ps` listing. */
function withDescendants(roots: readonly number[]): number[] {
  const children = new Map<number, number[]>();
  for (const line of run('ps', ['-e', '-o', 'pid=,ppid=']).split('\n')) {
    const [pid, ppid] = line.trim().split(/\s+/).map(Number);
    if (!pid || ppid === undefined || Number.isNaN(ppid)) continue;
    children.set(ppid, [...(children.get(ppid) ?? []), pid]);
  }
  const all = new Set<number>();
  const queue = [...roots];
  while (queue.length > 0) {
    const pid = queue.pop()!;
    if (all.has(pid)) continue;
    all.add(pid);
    queue.push(...(children.get(pid) ?? []));
  }
  return [...all];
}

/** Sets the CPU list of every thread of each pid; a process that ended meanwhile is skipped. */
function setAffinity(pids: readonly number[], cpus: string): void {
  for (const pid of pids) {
    try {
      run('taskset', ['-a', '-cp', cpus, String(pid)]);
    } catch (err) {
      // A backend that exited between the listing and now is no longer there to move.
      if (!/No such process|failed to get pid/i.test(String((err as { stderr?: string }).stderr ?? err))) throw err;
    }
  }
}

function range(from: number, to: number): string {
  return from === to ? String(from) : `${from}-${to}`;
}

/** Pins this process to the lower half of the CPUs and the servers listening on `ports` to the upper half. */
export function pinClientAndServers(ports: readonly number[]): Pinning {
  const cores = os.cpus().length;
  if (cores < 2) return { description: 'none (one CPU)', ...UNPINNED };
  const split = Math.floor(cores / 2);
  const client = range(0, split - 1);
  const servers = range(split, cores - 1);
  const every = range(0, cores - 1);
  const pin = (roots = listeners(ports)) => {
    setAffinity(withDescendants(roots), servers);
    setAffinity([process.pid], client);
  };
  try {
    const roots = listeners(ports);
    if (roots.length === 0) return { description: `none (no process found listening on ports ${ports.join(', ')})`, ...UNPINNED };
    pin(roots);
  } catch (err) {
    const reason = String((err as { stderr?: string }).stderr || (err as Error).message || err).trim().split('\n')[0];
    try {
      setAffinity([process.pid], every);
    } catch {
      // Nothing was moved if this fails too.
    }
    return { description: `none (${reason})`, ...UNPINNED };
  }
  let pinned = true;
  return {
    available: true,
    description: `client (Node, its workers) on CPU ${client}; PostgreSQL servers and PgBouncer on CPU ${servers}`,
    pin() {
      if (pinned) return;
      pinned = true;
      pin();
    },
    restore() {
      if (!pinned) return;
      pinned = false;
      setAffinity(withDescendants(listeners(ports)), every);
      setAffinity([process.pid], every);
    },
  };
}
