import { execFileSync } from 'node:child_process';
import autocannon from 'autocannon';
import pg from 'pg';
import { BenchChild, loaderPath } from '../bench.child.js';
import { benchCluster, clusterScript, HTTP_DATABASE, serverConfig, serverUrl, USERS_ROWS } from '../bench.config.js';
import { interleaveSides, median, pairedRatio, pause, withDeadline } from '../bench.harness.js';
import { atLeast, figure, type Figure } from '../bench.results.js';
import type { Scenario } from '../bench.scenario.js';

const CONNECTIONS = 64;
const RAW = 'hand-written pg.Pool provider';
const EMAIL_DOMAIN = 'bench.invalid';

interface HttpRun {
  rate: number;
  p50: number;
  p99: number;
  non2xx: number;
  errors: number;
}

/** Creates the scenario's database (as the cluster superuser) unless it exists. */
function ensureDatabase(): void {
  const psql = (sql: string) =>
    execFileSync('bash', [clusterScript, 'psql', 'primary', '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-c', sql], { encoding: 'utf8', timeout: 30_000 }).trim();
  if (psql(`SELECT 1 FROM pg_database WHERE datname = '${HTTP_DATABASE}'`) !== '1') {
    psql(`CREATE DATABASE ${HTTP_DATABASE} OWNER ${benchCluster.user}`);
  }
}

async function withClient<T>(port: number, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ ...serverConfig(port), database: HTTP_DATABASE, application_name: 'bench-http-seed', connectionTimeoutMillis: 5000 });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** Adds the bench users (idempotent) and returns their ids once both replicas have them. */
async function seedUsers(): Promise<number[]> {
  const ids = await withClient(benchCluster.ports.primary, async (client) => {
    await client.query(
      `INSERT INTO users (name, email) SELECT 'bench user ' || i, 'bench-user-' || i || '@${EMAIL_DOMAIN}' FROM generate_series(1, $1::int) AS i ON CONFLICT (email) DO NOTHING`,
      [USERS_ROWS],
    );
    const { rows } = await client.query<{ id: number }>(`SELECT id FROM users WHERE email LIKE $1 ORDER BY id LIMIT $2`, [`bench-user-%@${EMAIL_DOMAIN}`, USERS_ROWS]);
    return rows.map((r) => r.id);
  });
  const deadline = Date.now() + 30_000;
  for (const port of [benchCluster.ports.replica1, benchCluster.ports.replica2]) {
    for (;;) {
      const seen = await withClient(port, async (client) => {
        const { rows } = await client.query<{ n: number }>('SELECT count(*)::int AS n FROM users WHERE id = ANY($1::int[])', [ids]);
        return rows[0]!.n;
      }).catch(() => -1);
      if (seen === ids.length) break;
      if (Date.now() > deadline) throw new Error(`Cannot run the HTTP scenario because the replica on port ${port} has not replayed the bench users within 30 s. Please make sure that both replicas stream.`);
      await pause(200);
    }
  }
  return ids;
}

async function load(port: number, seconds: number, ids: readonly number[]): Promise<HttpRun> {
  let next = 0;
  const result = await withDeadline(
    autocannon({
      url: `http://127.0.0.1:${port}`,
      connections: CONNECTIONS,
      duration: seconds,
      timeout: 10,
      requests: [
        {
          method: 'GET',
          setupRequest: (request) => {
            next = (next + 1) % ids.length;
            return { ...request, path: `/users/${ids[next]}` };
          },
        },
      ],
    }),
    seconds * 1000 + 30_000,
    'an autocannon run',
  );
  const completed = result['2xx'] + result.non2xx;
  return { rate: completed / result.duration, p50: result.latency.p50, p99: result.latency.p99, non2xx: result.non2xx, errors: result.errors };
}

export const httpScenario: Scenario = {
  id: '5',
  title: 'HTTP: the sample app GET /users/:id vs the same route on a hand-written pg.Pool provider',
  async run({ timing, log }) {
    ensureDatabase();
    const started: BenchChild[] = [];
    try {
      const { ports } = benchCluster;
      const oursEnv = (replicaPorts: number[], applicationName: string) => ({
        DB_PRIMARY_URL: serverUrl(ports.primary, HTTP_DATABASE),
        DB_REPLICA_URLS: replicaPorts.map((port) => serverUrl(port, HTTP_DATABASE)).join(','),
        DB_APPLICATION_NAME: applicationName,
        DB_POOL_MAX_SIZE: '10',
      });
      const execArgv = ['--import', loaderPath];
      const ours = await BenchChild.start('http server (sample app, replica1)', 'http-server.worker.js', ['ours'], 60_000, {
        execArgv,
        env: oursEnv([ports.replica1], 'bench-ours-http'),
      });
      started.push(ours.child);
      const ids = await seedUsers();
      const oursBoth = await BenchChild.start('http server (sample app, both replicas)', 'http-server.worker.js', ['ours'], 60_000, {
        execArgv,
        env: oursEnv([ports.replica1, ports.replica2], 'bench-ours-http-2'),
      });
      started.push(oursBoth.child);
      const raw = await BenchChild.start('http server (raw)', 'http-server.worker.js', ['raw'], 60_000, { execArgv });
      started.push(raw.child);
      const scoped = await BenchChild.start('http server (raw + request scope)', 'http-server.worker.js', ['raw-scoped'], 60_000, { execArgv });
      started.push(scoped.child);
      const [oursRuns, rawRuns, scopedRuns, bothRuns] = await interleaveSides(
        timing.httpReps,
        [ours, raw, scoped, oursBoth].map((server) => () => load(Number(server.ready.port), timing.httpSeconds, ids)),
      );
      const runs = { ours: oursRuns!, raw: rawRuns!, scoped: scopedRuns!, both: bothRuns! };
      const bad = [...runs.ours, ...runs.raw, ...runs.scoped, ...runs.both].reduce((n, r) => n + r.non2xx + r.errors, 0);
      if (bad > 0) {
        throw new Error(`Cannot trust the HTTP figures because ${bad} responses were not 2xx or failed. Please make sure that the cluster is up and both replicas stream.`);
      }
      const rates = (side: HttpRun[]) => side.map((r) => r.rate);
      /** One throughput comparison: medians of both sides, the median per-pair ratio, and the pairs. */
      const versus = (id: string, label: string, a: HttpRun[], b: HttpRun[], reference: string, extra: Partial<Figure> = {}) =>
        figure({
          id,
          label,
          ours: median(rates(a)),
          raw: median(rates(b)),
          reference,
          unit: 'req/s',
          value: pairedRatio(rates(a), rates(b)),
          valueUnit: '×',
          samples: rates(a).map((o, i) => o / rates(b)[i]!),
          ...extra,
        });
      const ratio = pairedRatio(rates(runs.ours), rates(runs.raw));
      const scopedRatio = pairedRatio(rates(runs.scoped), rates(runs.raw));
      const oursVsScoped = pairedRatio(rates(runs.ours), rates(runs.scoped));
      const oursP99 = median(runs.ours.map((r) => r.p99));
      const rawP99 = median(runs.raw.map((r) => r.p99));
      log(`  ours ${median(rates(runs.ours)).toFixed(0)} req/s p99 ${oursP99}ms; raw ${median(rates(runs.raw)).toFixed(0)} req/s p99 ${rawP99}ms; ratio ${ratio.toFixed(3)}`);
      log(`  raw + request-scope interceptor ${median(rates(runs.scoped)).toFixed(0)} req/s; ratio to raw ${scopedRatio.toFixed(3)}`);
      log(`  sample app on both replicas ${median(rates(runs.both)).toFixed(0)} req/s`);
      return {
        method:
          `Express apps in child processes. Ours: the sample app (sample-app/src AppModule: PoolModule.forRootAsync with library defaults, ` +
          `DB_POOL_MAX_SIZE=10, global routing interceptor, health and metrics endpoints) configured with the primary and replica1, ` +
          'so its @ReadOnly() GET /users/:id reads from the same server as the reference. Raw: the same route (the sample id parsing, ' +
          'statement, 404 and body) on a hand-written pg.Pool({ max: 10 }) provider on replica1, given the library session settings ' +
          '(statement_timeout, TimeZone, read-only). A fourth app is the sample app with both replicas, round-robin: on this machine the ' +
          'second replica runs on the same 2 cores as everything else, so spreading reads over it adds work instead of capacity. ' +
          'A third app adds to raw only a global interceptor that runs each request in an AsyncLocalStorage scope (nestjs-cls style), to show ' +
          'what a request scope costs by itself. ' +
          `All read ${USERS_ROWS} users in database ${HTTP_DATABASE}. autocannon (${CONNECTIONS} connections, loopback, cycling through the ids) ` +
          `runs ${timing.httpSeconds}s against each in turn (order alternating); medians over ${timing.httpReps} repetitions.`,
        figures: [
          versus('5.req-per-s', `GET /users/:id, ${CONNECTIONS} connections, both apps reading from replica1: throughput`, runs.ours, runs.raw, RAW, {
            target: atLeast(0.95),
            whenNotMet:
              `A request-scoped AsyncLocalStorage by itself takes the raw app to ${scopedRatio.toFixed(3)}× (row "For scale"): on Node ${process.versions.node.split('.')[0]} ` +
              'AsyncLocalStorage propagates through promise hooks, which every promise of every request pays once any scope exists ' +
              '(Node 24 and later implement it without them, with AsyncContextFrame). The routing scope is what carries @ReadOnly(), ' +
              `transactions and read-your-writes across awaits, so the library keeps it; measured against the raw app with the same request scope, ours is ${oursVsScoped.toFixed(3)}× (row "The library's own share").`,
          }),
          figure({
            id: '5.p99',
            label: `GET /users/:id, ${CONNECTIONS} connections, both apps reading from replica1: p99 latency`,
            ours: oursP99,
            raw: rawP99,
            reference: RAW,
            unit: 'ms',
            value: oursP99 / rawP99,
            valueUnit: '×',
          }),
          versus('5.request-scope', 'For scale: the same raw app plus only a request-scoped AsyncLocalStorage interceptor', runs.scoped, runs.raw, RAW),
          versus(
            '5.both-replicas',
            'For scale: the sample app reading from both replicas (round-robin), all servers on the same 2 cores',
            runs.both,
            runs.raw,
            RAW,
          ),
          versus(
            '5.vs-request-scope',
            "The library's own share: ours vs the raw app with the same request-scoped AsyncLocalStorage interceptor",
            runs.ours,
            runs.scoped,
            'raw app + request scope',
          ),
        ],
        details: { ours: runs.ours, raw: runs.raw, rawWithRequestScope: runs.scoped, oursBothReplicas: runs.both },
      };
    } finally {
      await Promise.all(started.map((c) => c.stop()));
    }
  },
};
