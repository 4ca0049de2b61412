import { clusterConfig, connectionString, pgNodeNames, type ClusterNodeName } from './cluster.js';
import { sessionCounts } from './sessions.js';

// Helpers of the foundation e2e tests: a node's URL, the pools' sessions of an application on all
// servers together (from test/support/sessions.ts), polling for a value, and stdout capture for
// "no password anywhere" checks.

/** `postgres://app:<password>@127.0.0.1:<port>/app` for `node`, or for any `port` (e.g. one nothing listens on). */
export function nodeUrl(node: ClusterNodeName | number, password = clusterConfig.password): string {
  if (typeof node === 'string') return connectionString(node, { password });
  const { user, host, database } = clusterConfig;
  return `postgres://${user}:${encodeURIComponent(password)}@${host}:${node}/${database}`;
}

/** The pools' sessions of this application (client backends, `application_name` exactly) on each PostgreSQL node. */
export function poolSessionCounts(applicationName: string) {
  return sessionCounts(applicationName, { clientBackendsOnly: true, poolOnly: true });
}

/** The pools' sessions of this application on all servers together. */
export async function totalSessions(applicationName: string): Promise<number> {
  const counts = await poolSessionCounts(applicationName);
  return pgNodeNames.reduce((sum, node) => sum + counts[node], 0);
}

/** Every session the library opened for this application, its `<app>:*` companions included, on all servers (the leak check). */
export async function librarySessions(applicationName: string): Promise<number> {
  const counts = await sessionCounts(applicationName, { clientBackendsOnly: true });
  return pgNodeNames.reduce((sum, node) => sum + counts[node], 0);
}

/** Polls `read` until `accept` holds or `timeoutMs` passes; returns the last value either way. */
export async function waitUntil<T>(read: () => Promise<T> | T, accept: (value: T) => boolean, timeoutMs = 3000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let value = await read();
  while (!accept(value) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, everyMs).unref());
    value = await read();
  }
  return value;
}

/** Captures everything written to stdout and stderr (still passing it through) until `restore()`. */
export function captureOutput(): { readonly text: string; restore(): void } {
  const chunks: string[] = [];
  const out = process.stdout.write.bind(process.stdout);
  const err = process.stderr.write.bind(process.stderr);
  const tap =
    (write: typeof out) =>
    (chunk: unknown, ...args: unknown[]): boolean => {
      chunks.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk as Uint8Array).toString('utf8'));
      return (write as (...a: unknown[]) => boolean)(chunk, ...args);
    };
  process.stdout.write = tap(out) as typeof process.stdout.write;
  process.stderr.write = tap(err) as typeof process.stderr.write;
  return {
    get text() {
      return chunks.join('');
    },
    restore() {
      process.stdout.write = out;
      process.stderr.write = err;
    },
  };
}
