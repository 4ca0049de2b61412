import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { PoolModuleOptions } from 'nestjs-pg-pools';

type Env = Record<string, string | undefined>;

/** The repository's cluster settings (scripts/cluster.env), two folders up from src/ and dist/ alike. */
const CLUSTER_ENV_FILE = fileURLToPath(new URL('../../scripts/cluster.env', import.meta.url));

function readClusterEnv(): Record<string, string> {
  if (!existsSync(CLUSTER_ENV_FILE)) {
    throw new Error(
      `Cannot configure the sample app's database because DB_PRIMARY_URL is not set and ${CLUSTER_ENV_FILE} does not exist. ` +
        'Please make sure that DB_PRIMARY_URL (and DB_REPLICA_URLS) are set, or run the app from the repository.',
    );
  }
  const values: Record<string, string> = {};
  for (const line of readFileSync(CLUSTER_ENV_FILE, 'utf8').split(/\r?\n/)) {
    const match = /^\s*([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (match) values[match[1]!] = match[2]!.trim();
  }
  return values;
}

/**
 * Connection URLs of the project's local cluster (`bash scripts/cluster.sh start`), with the same
 * `PGPOOLS_CLUSTER_OFFSET` port shift as the script.
 */
export function localClusterUrls(env: Env = process.env): { primary: string; replicas: string[] } {
  const cluster = readClusterEnv();
  const offset = Number(env.PGPOOLS_CLUSTER_OFFSET ?? '0') * 10 || 0;
  const url = (portKey: string) => {
    const user = encodeURIComponent(cluster.PG_USER ?? '');
    const password = encodeURIComponent(cluster.PG_PASSWORD ?? '');
    const port = Number(cluster[portKey]) + offset;
    return `postgres://${user}:${password}@${cluster.PG_HOST}:${port}/${encodeURIComponent(cluster.PG_DATABASE ?? '')}`;
  };
  return { primary: url('PG_PRIMARY_PORT'), replicas: [url('PG_REPLICA1_PORT'), url('PG_REPLICA2_PORT')] };
}

/**
 * The sample's pool options: `DB_PRIMARY_URL` / `DB_REPLICA_URLS` (comma-separated) when set,
 * else the local cluster. Sizing and timeouts come from the preset (`DB_ENV` / `NODE_ENV`) and the
 * `DB_POOL_*` variables, which the library reads itself.
 */
export function databaseOptions(env: Env = process.env): PoolModuleOptions {
  const local = env.DB_PRIMARY_URL ? undefined : localClusterUrls(env);
  const primary = env.DB_PRIMARY_URL ?? local!.primary;
  const replicas =
    env.DB_REPLICA_URLS !== undefined
      ? env.DB_REPLICA_URLS.split(',').map((url) => url.trim()).filter((url) => url !== '')
      : (local?.replicas ?? []);
  return {
    applicationName: env.DB_APPLICATION_NAME ?? 'nestjs-pg-pools-sample',
    primary: { connectionString: primary },
    replicas: replicas.map((connectionString) => ({ connectionString })),
  };
}

/** `host:port` of a connection URL, for the start-up banner (never the credentials). */
export function addressOf(url: string): string {
  const { hostname, port } = new URL(url);
  return `${hostname}:${port || '5432'}`;
}
