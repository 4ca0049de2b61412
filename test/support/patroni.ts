// Test-side handle on the Patroni cluster of scripts/patroni.sh: etcd + node1..node3 (Patroni-managed
// PostgreSQL 15) + HAProxy (read-write port on /primary, read-only port on /replica). Settings come
// from scripts/patroni.env, the one place that holds them.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { parseClusterEnv, repoRoot } from './cluster.js';
import { sleep } from './wait.js';

export type PatroniNode = 'node1' | 'node2' | 'node3';
export const patroniNodes: readonly PatroniNode[] = ['node1', 'node2', 'node3'];

const envFile = path.join(repoRoot, 'scripts', 'patroni.env');
const env = parseClusterEnv(readFileSync(envFile, 'utf8'));
const num = (key: string): number => {
  const v = Number(env[key]);
  if (!Number.isInteger(v)) throw new Error(`${envFile}: ${key} is missing or not a number`);
  return v;
};

export const patroni = Object.freeze({
  host: env.PATRONI_HOST!,
  user: env.PG_USER!,
  password: env.PG_PASSWORD!,
  database: env.PG_DATABASE!,
  pgPorts: { node1: num('PATRONI_PG_PORT1'), node2: num('PATRONI_PG_PORT2'), node3: num('PATRONI_PG_PORT3') } as Record<PatroniNode, number>,
  restPorts: { node1: num('PATRONI_REST_PORT1'), node2: num('PATRONI_REST_PORT2'), node3: num('PATRONI_REST_PORT3') } as Record<PatroniNode, number>,
  haproxyRw: num('HAPROXY_RW_PORT'),
  haproxyRo: num('HAPROXY_RO_PORT'),
  ttl: num('PATRONI_TTL'),
  loopWait: num('PATRONI_LOOP_WAIT'),
});

/** `postgres://app:…@127.0.0.1:<ports…>/app` (several ports: a libpq multi-host URL), with `params`. */
export function patroniUrl(ports: readonly number[], params: Record<string, string> = {}): string {
  const query = new URLSearchParams(params).toString();
  const hosts = ports.map((p) => `${patroni.host}:${p}`).join(',');
  return `postgres://${encodeURIComponent(patroni.user)}:${encodeURIComponent(patroni.password)}@${hosts}/${encodeURIComponent(patroni.database)}${query ? `?${query}` : ''}`;
}

/** The Patroni node listening on `port`. */
export function patroniNodeAt(port: number | string): PatroniNode {
  const found = patroniNodes.find((n) => patroni.pgPorts[n] === Number(port));
  if (found === undefined) throw new Error(`port ${port} is not a Patroni node`);
  return found;
}

/** Runs `bash scripts/patroni.sh ARGS` (output to ours); resolves with its stdout. */
export function patroniCtl(...args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [path.join(repoRoot, 'scripts', 'patroni.sh'), ...args], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      process.stdout.write(d);
    });
    child.once('error', reject);
    child.once('exit', (code, signal) => (code === 0 ? resolve(out) : reject(new Error(`bash scripts/patroni.sh ${args.join(' ')} failed with ${signal ?? `exit code ${code}`}`))));
  });
}

/** The leader Patroni publishes (any node's REST /cluster; a running leader), or undefined. */
export async function publishedLeader(): Promise<PatroniNode | undefined> {
  for (const n of patroniNodes) {
    try {
      const res = await fetch(`http://${patroni.host}:${patroni.restPorts[n]}/cluster`, { signal: AbortSignal.timeout(500) });
      const body = (await res.json()) as { members?: Array<{ name: string; role: string; state: string }> };
      const leader = body.members?.find((m) => m.role === 'leader' && m.state === 'running');
      if (leader) return leader.name as PatroniNode;
    } catch {
      // Try the next node's REST API.
    }
  }
  return undefined;
}

/** `pg_is_in_recovery()` of `node` over a new connection (undefined when it does not answer within 500 ms). */
export async function inRecovery(node: PatroniNode): Promise<boolean | undefined> {
  const client = new pg.Client({ host: patroni.host, port: patroni.pgPorts[node], user: patroni.user, password: patroni.password, database: patroni.database, connectionTimeoutMillis: 500, application_name: 'patroni-admin' });
  client.on('error', () => undefined);
  try {
    await client.connect();
    const res = await client.query<{ ro: boolean }>('SELECT pg_is_in_recovery() AS ro');
    return res.rows[0]!.ro;
  } catch {
    return undefined;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Polls `fn` every `everyMs` until it is truthy; resolves with `Date.now()` then, or undefined at `timeoutMs`. */
export async function timeOf(fn: () => Promise<unknown>, timeoutMs: number, everyMs = 25): Promise<number | undefined> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await fn()) return Date.now();
    await sleep(everyMs);
  }
  return undefined;
}

/** One statement as the app user on `node` (or a port). */
export async function patroniQuery<R extends pg.QueryResultRow = Record<string, any>>(target: PatroniNode | number, sql: string, values?: unknown[]): Promise<R[]> {
  const port = typeof target === 'number' ? target : patroni.pgPorts[target];
  const client = new pg.Client({ host: patroni.host, port, user: patroni.user, password: patroni.password, database: patroni.database, connectionTimeoutMillis: 3000, application_name: 'patroni-admin' });
  client.on('error', () => undefined);
  try {
    await client.connect();
    return (await client.query<R>(sql, values)).rows;
  } finally {
    await client.end().catch(() => undefined);
  }
}
