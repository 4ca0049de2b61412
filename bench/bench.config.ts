import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { PoolConfig } from 'pg';

/** Repository root: the nearest folder above this file holding scripts/cluster.env. */
export const repoRoot = findRepoRoot(path.dirname(fileURLToPath(import.meta.url)));

function findRepoRoot(start: string): string {
  for (let dir = start; ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'scripts/cluster.env'))) return dir;
    if (path.dirname(dir) === dir) {
      throw new Error(`Cannot find scripts/cluster.env above ${start}. Please make sure that the benchmarks run inside the repository.`);
    }
  }
}

function readClusterEnv(): Record<string, string> {
  const text = readFileSync(path.join(repoRoot, 'scripts/cluster.env'), 'utf8');
  const values: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const match = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (match) values[match[1]!] = match[2]!;
  }
  return values;
}

/** `PGPOOLS_CLUSTER_OFFSET=N` (1-9): the independent cluster copy scripts/cluster.sh runs with every port shifted by N×10. */
function clusterOffset(): number {
  const raw = process.env.PGPOOLS_CLUSTER_OFFSET ?? '0';
  if (!/^[0-9]$/.test(raw)) throw new Error(`Invalid environment variable PGPOOLS_CLUSTER_OFFSET: expected a digit 0-9, got ${JSON.stringify(raw)}.`);
  return Number(raw) * 10;
}

const env = readClusterEnv();
const offset = clusterOffset();

export const benchCluster = {
  host: env.PG_HOST!,
  user: env.PG_USER!,
  password: env.PG_PASSWORD!,
  database: env.PG_DATABASE!,
  ports: {
    primary: Number(env.PG_PRIMARY_PORT) + offset,
    replica1: Number(env.PG_REPLICA1_PORT) + offset,
    replica2: Number(env.PG_REPLICA2_PORT) + offset,
  },
  pgbouncerPort: Number(env.PGBOUNCER_PORT) + offset,
};

/** Pool size of every pool in every scenario (ours and raw). */
export const POOL_MAX = 10;

export function serverConfig(port: number): { host: string; port: number; user: string; password: string; database: string } {
  const { host, user, password, database } = benchCluster;
  return { host, port, user, password, database };
}

/**
 * The hand-written `pg.Pool` a user would write: server, credentials, `max`; plus, when given,
 * the server session settings (`options`) the library applies by default, so both sides ask the
 * server for the same work per statement.
 */
export function rawPoolConfig(port: number, applicationName: string, sessionOptions?: string): PoolConfig {
  return { ...serverConfig(port), application_name: applicationName, max: POOL_MAX, ...(sessionOptions ? { options: sessionOptions } : {}) };
}

/** The HTTP scenario runs the sample app in its own database, so its users never mix with other runs'. */
export const HTTP_DATABASE = 'bench_http';
/** Users the HTTP scenario creates (and reads with `GET /users/:id`). */
export const USERS_ROWS = 1000;

/** `postgres://user:password@host:port/database` of one server of the bench cluster. */
export function serverUrl(port: number, database: string): string {
  const { host, user, password } = benchCluster;
  return `postgres://${encodeURIComponent(user)}:${encodeURIComponent(password)}@${host}:${port}/${encodeURIComponent(database)}`;
}

/** The current Node.js LTS line, which the HTTP scenario runs its apps on besides the bench's own Node. */
export const LTS_LINE = '26';

/**
 * The Node.js binary of the LTS line, installed into the git-ignored .node/<line>/ by
 * `bash scripts/node-lts.sh install <line>` (npm run bench and npm test do it first).
 */
export function ltsNode(): string {
  const binary = path.join(repoRoot, '.node', LTS_LINE, 'bin', 'node');
  if (!existsSync(binary)) {
    throw new Error(
      `Cannot run the HTTP scenario on Node ${LTS_LINE} because ${path.relative(repoRoot, binary)} is missing. ` +
        `Please run \`bash scripts/node-lts.sh install ${LTS_LINE}\` first (npm run bench does).`,
    );
  }
  return binary;
}

/** scripts/cluster.sh (it reads PGPOOLS_CLUSTER_OFFSET from the environment too). */
export const clusterScript = path.join(repoRoot, 'scripts/cluster.sh');

export interface BenchTiming {
  /** Interleaved repetitions per comparison (each side runs once per repetition). */
  reps: number;
  /** Length of one side of one repetition in the throughput scenarios. Short slices keep each pair close in time. */
  sliceMs: number;
  /** Length of one side of one repetition in the acquire/release scenario. */
  acquireSliceMs: number;
  /** Length of the connect-per-request side of one repetition. */
  connectSliceMs: number;
  /** autocannon duration of one side of one repetition, seconds, and the number of repetitions. */
  httpSeconds: number;
  httpReps: number;
  contentionSliceMs: number;
  /** Queries per side per memory repetition, repetitions, and the time cap of one chunk. */
  memoryChunk: number;
  memoryReps: number;
  memoryChunkCapMs: number;
}

// 41 pairs put the 95 % interval of a median at the 14th and 28th of them (21 pairs: the 6th and 16th,
// as wide as the interquartile range); 15 HTTP pairs, at the 4th and 12th.
export const FULL_TIMING: BenchTiming = {
  reps: 41,
  sliceMs: 300,
  acquireSliceMs: 200,
  connectSliceMs: 600,
  httpSeconds: 2,
  httpReps: 15,
  contentionSliceMs: 600,
  memoryChunk: 100_000,
  memoryReps: 10,
  memoryChunkCapMs: 10_000,
};

export const SMOKE_TIMING: BenchTiming = {
  reps: 2,
  sliceMs: 100,
  acquireSliceMs: 50,
  connectSliceMs: 150,
  httpSeconds: 0.3,
  httpReps: 1,
  contentionSliceMs: 150,
  memoryChunk: 2_000,
  memoryReps: 2,
  memoryChunkCapMs: 2_000,
};
