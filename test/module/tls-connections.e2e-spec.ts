import { jest } from '@jest/globals';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { type TestingModule } from '@nestjs/testing';
import type { Pool } from 'pg';
import { DatabaseService, PoolConnectionError, PoolModule, getPoolToken, type NodeOptions, type PoolModuleRootOptions } from 'nestjs-pg-pools';
import { adminQuery, clusterConfig, nodeOptions, pgNodeNames, type PgNodeName } from '../support/cluster.js';
import { captureOutput, nodeUrl } from '../support/foundation-db.js';
import { CapturingLogger } from '../support/logger.js';
import { closeStartedModules, startModules } from '../support/app.js';

// TLS against the real cluster: scripts/cluster.sh starts every PostgreSQL node with ssl = on and a
// server certificate signed by its local CA (.cluster*/tls/ca.crt); other-ca.crt is an unrelated CA.
jest.setTimeout(20_000);

const APP = 'tls-connections';
const { primary, replica1, replica2 } = clusterConfig.ports;
const tlsDir = path.join(clusterConfig.clusterDir, 'tls');
const caFile = path.join(tlsDir, 'ca.crt');
const otherCaFile = path.join(tlsDir, 'other-ca.crt');
const verifyFull = (node: PgNodeName, rootCert = caFile) => `${nodeUrl(node)}?sslmode=verify-full&sslrootcert=${encodeURIComponent(rootCert)}`;
const sslObject = (ca = caFile) => ({ ca: readFileSync(ca, 'utf8'), rejectUnauthorized: true });

let seq = 0;

function options(extra: Partial<PoolModuleRootOptions>): PoolModuleRootOptions {
  return { applicationName: `${APP}-${++seq}`, min: 1, sizingAdvisor: false, env: {}, ...extra } as PoolModuleRootOptions;
}

const start = (opts: PoolModuleRootOptions, logger?: CapturingLogger): Promise<TestingModule> => startModules([PoolModule.forRoot(opts)], logger);

afterEach(closeStartedModules);

interface SslRow {
  port: number;
  ssl: boolean;
}
const OWN_SESSION = 'SELECT inet_server_port() AS port, s.ssl FROM pg_stat_ssl s WHERE s.pid = pg_backend_pid()';

/** pg_stat_ssl.ssl of every client session of `applicationName`, per node (from the superuser's side). */
async function sslBySession(applicationName: string): Promise<Record<PgNodeName, boolean[]>> {
  const entries = await Promise.all(
    pgNodeNames.map(async (node) => {
      const rows = await adminQuery<{ ssl: boolean }>(
        node,
        `SELECT s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
          WHERE a.application_name = $1 AND a.backend_type = 'client backend'`,
        [applicationName],
      );
      return [node, rows.map((r) => r.ssl)] as const;
    }),
  );
  return Object.fromEntries(entries) as Record<PgNodeName, boolean[]>;
}

/** The server's view (port, ssl) of the connection each pool answers on: the primary's first, then each replica's. */
async function ownSessions(app: TestingModule): Promise<SslRow[]> {
  const primaryRow = (await app.get(DatabaseService).primary.query<SslRow>(OWN_SESSION)).rows[0]!;
  const replicaPools = app.get<Pool[]>(getPoolToken(undefined, 'replicas'));
  return [primaryRow, ...(await Promise.all(replicaPools.map(async (pool) => (await pool.query<SslRow>(OWN_SESSION)).rows[0]!)))];
}

/** Every node answers over TLS, and every session the library opened on every server is encrypted. */
async function expectAllTls(app: TestingModule, applicationName: string): Promise<void> {
  expect(await ownSessions(app)).toEqual([
    { port: primary, ssl: true },
    { port: replica1, ssl: true },
    { port: replica2, ssl: true },
  ]);
  const sessions = await sslBySession(applicationName);
  for (const node of pgNodeNames) {
    expect(sessions[node].length).toBeGreaterThanOrEqual(1);
    expect(sessions[node]).toEqual(sessions[node].map(() => true));
  }
}

describe('TLS with certificate verification', () => {
  it('sslmode=verify-full&sslrootcert in the URLs: primary and both replicas encrypted', async () => {
    const opts = options({ primary: { connectionString: verifyFull('primary') }, replicas: [{ connectionString: verifyFull('replica1') }, { connectionString: verifyFull('replica2') }] });
    await expectAllTls(await start(opts), opts.applicationName!);
  });

  it('the ssl object form ({ ca, rejectUnauthorized: true }, host name checked): primary and both replicas encrypted', async () => {
    const node = (name: PgNodeName): NodeOptions => nodeOptions(name, { ssl: sslObject() });
    const opts = options({ primary: node('primary'), replicas: [node('replica1'), node('replica2')] });
    await expectAllTls(await start(opts), opts.applicationName!);
  });

  it('a wrong CA on the primary fails the startup with one PoolConnectionError naming the node and the certificate error, no password', async () => {
    const logger = new CapturingLogger();
    const output = captureOutput();
    const opts = options({ primary: nodeOptions('primary', { ssl: sslObject(otherCaFile) }), retryAttempts: 2, retryDelayMs: 20 });
    let error: unknown;
    try {
      await start(opts, logger);
    } catch (err) {
      error = err;
    } finally {
      output.restore();
    }
    expect(error).toBeInstanceOf(PoolConnectionError);
    expect(error).toMatchObject({ database: 'default', node: 'primary', address: `127.0.0.1:${primary}` });
    expect((error as Error).message).toMatch(
      new RegExp(`^Cannot connect to "default/primary" at 127\\.0\\.0\\.1:${primary} after 2 attempt\\(s\\): (Error: )?unable to verify the first certificate.*\\. Please make sure`),
    );
    for (const text of [(error as Error).message, logger.text, output.text]) expect(text).not.toContain(clusterConfig.password);
  });

  it('a wrong CA on one replica (sslrootcert in its URL) bans that replica by name at startup; reads go to the other one', async () => {
    const logger = new CapturingLogger();
    const opts = options({
      primary: { connectionString: verifyFull('primary') },
      replicas: [{ connectionString: verifyFull('replica1', otherCaFile) }, { connectionString: verifyFull('replica2') }],
      retryAttempts: 1,
    });
    const app = await start(opts, logger);
    expect(logger.messages('warn')).toContainEqual(
      expect.stringMatching(new RegExp(`^Replica "default/replica-1" \\(127\\.0\\.0\\.1:${replica1}\\) banned for \\d+ms: .*certificate`)),
    );
    const db = app.get(DatabaseService);
    for (let i = 0; i < 3; i++) expect((await db.replica.query<SslRow>(OWN_SESSION)).rows[0]).toEqual({ port: replica2, ssl: true });
    expect(logger.text).not.toContain(clusterConfig.password);
  });
});

describe('environment URLs and per-node TLS options', () => {
  it('DB_PRIMARY_URL and DB_REPLICA_URLS without sslmode keep the ssl (and max) given in code for each node', async () => {
    const node = (name: PgNodeName, max: number): NodeOptions => nodeOptions(name, { ssl: sslObject(), max });
    const opts = options({
      primary: node('primary', 3),
      replicas: [node('replica1', 2), node('replica2', 2)],
      env: { DB_PRIMARY_URL: nodeUrl('primary'), DB_REPLICA_URLS: `${nodeUrl('replica1')},${nodeUrl('replica2')}` },
    });
    const app = await start(opts);
    await expectAllTls(app, opts.applicationName!);
    expect(app.get<Pool>(getPoolToken()).options.max).toBe(3);
    expect(app.get<Pool[]>(getPoolToken(undefined, 'replicas')).map((p) => p.options.max)).toEqual([2, 2]);
  });

  it('sslmode in an environment URL takes precedence over ssl from code: verify-full with sslrootcert encrypts, disable does not', async () => {
    const opts = options({
      primary: nodeOptions('primary', { ssl: sslObject(otherCaFile) }),
      replicas: [nodeOptions('replica1', { ssl: sslObject() }), nodeOptions('replica2', { ssl: sslObject() })],
      env: { DB_PRIMARY_URL: verifyFull('primary'), DB_REPLICA_URLS: `${nodeUrl('replica1')}?sslmode=disable,${verifyFull('replica2')}` },
    });
    const app = await start(opts);
    // The wrong CA in code is not used: the URL's sslrootcert is.
    expect(await ownSessions(app)).toEqual([
      { port: primary, ssl: true },
      { port: replica1, ssl: false },
      { port: replica2, ssl: true },
    ]);
  });
});
