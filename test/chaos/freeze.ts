import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { clusterConfig, type PgNodeName } from '../support/cluster.js';

// Freezes a PostgreSQL server of the test cluster with SIGSTOP: the postmaster and every process
// it started (backends, WAL sender/receiver, checkpointer…). Sockets stay open and the kernel
// still accepts TCP connections, but nothing answers: what a network partition, a stuck VM or a
// black-holing load balancer looks like to a client. The returned `thaw` sends SIGCONT to every
// stopped process; call it in a `finally`.

function postmasterPid(node: PgNodeName): number {
  const file = path.join(clusterConfig.clusterDir, node, 'postmaster.pid');
  const pid = Number(readFileSync(file, 'utf8').split('\n')[0]);
  if (!Number.isInteger(pid) || pid <= 0) throw new Error(`no postmaster pid in ${file}`);
  return pid;
}

function childrenOf(parent: number): number[] {
  const children: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // pid (comm) state ppid …: comm may contain spaces, so parse after the last ')'.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === parent) children.push(Number(entry));
    } catch {
      // The process ended meanwhile.
    }
  }
  return children;
}

/** SIGSTOPs `node`'s server processes; resolves with a `thaw()` that SIGCONTs them (idempotent). */
export function freezeNode(node: PgNodeName): () => void {
  const postmaster = postmasterPid(node);
  const stopped: number[] = [];
  const signal = (pid: number, sig: NodeJS.Signals) => {
    try {
      process.kill(pid, sig);
      return true;
    } catch {
      return false;
    }
  };
  // The postmaster first, so it forks nothing new while its children are being stopped.
  if (signal(postmaster, 'SIGSTOP')) stopped.push(postmaster);
  for (const pid of childrenOf(postmaster)) if (signal(pid, 'SIGSTOP')) stopped.push(pid);
  let thawed = false;
  return () => {
    if (thawed) return;
    thawed = true;
    for (const pid of stopped.reverse()) signal(pid, 'SIGCONT');
  };
}
