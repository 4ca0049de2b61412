import { execFileSync } from 'node:child_process';
import autocannon from 'autocannon';
import pg from 'pg';
import { BenchChild, loaderPath } from '../bench.child.js';
import { benchCluster, clusterScript, HTTP_DATABASE, LTS_LINE, ltsNode, serverConfig, serverUrl, USERS_ROWS } from '../bench.config.js';
import { interleaveSides, median, pairedRatio, pause, withDeadline } from '../bench.harness.js';
import { atLeast, atMost, figure, type Figure } from '../bench.results.js';
import type { Scenario } from '../bench.scenario.js';

const CONNECTIONS = 64;
const RAW = 'hand-written pg.Pool provider';
const EMAIL_DOMAIN = 'bench.invalid';

interface HttpRun {
  rate: number;
  /** CPU time (user + system) the server process spent per completed request, µs. */
  cpuUs: number;
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

async function cpuOf(server: BenchChild): Promise<number> {
  const usage = await server.request({ cmd: 'cpu' }, 10_000);
  return Number(usage.user) + Number(usage.system);
}

async function load(server: BenchChild, port: number, seconds: number, ids: readonly number[], route: 'users' | 'ping'): Promise<HttpRun> {
  let next = 0;
  const cpuBefore = await cpuOf(server);
  const result = await withDeadline(
    autocannon({
      url: `http://127.0.0.1:${port}`,
      connections: CONNECTIONS,
      duration: seconds,
      timeout: 10,
      requests: [
        route === 'ping'
          ? { method: 'GET', path: '/ping' }
          : {
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
  const cpuUs = await cpuOf(server);
  const completed = result['2xx'] + result.non2xx;
  return { cpuUs: (cpuUs - cpuBefore) / Math.max(1, completed), rate: completed / result.duration, p50: result.latency.p50, p99: result.latency.p99, non2xx: result.non2xx, errors: result.errors };
}

type Side = 'ours' | 'raw' | 'raw-scoped';
type Adapter = 'express' | 'fastify';

const NAMES: Record<Side, string> = { ours: 'sample app', raw: 'raw', 'raw-scoped': 'raw + request scope' };

export const httpScenario: Scenario = {
  id: '5',
  title: `HTTP: the sample app GET /users/:id and GET /ping vs the same routes on a hand-written pg.Pool provider, Express and Fastify, on the bench's Node and on the current LTS (Node ${LTS_LINE})`,
  unpinnedBecause:
    'its client side is two processes, the app under test and the load generator (autocannon); kept on the client\'s CPU they would take turns ' +
    'on it, which no deployment does, and the apps would be measured starved of CPU (their CPU time per request is its own row).',
  // 16 loads (8 per runtime), each run once per repetition and per warm-up round, plus autocannon's
  // start and the CPU reads around each run, plus starting and stopping 10 apps.
  deadlineMs: (timing) => 16 * (timing.httpReps + 2) * (timing.httpSeconds + 1) * 1000 + 180_000,
  async run({ timing, log }) {
    ensureDatabase();
    const started: BenchChild[] = [];
    try {
      const { ports } = benchCluster;
      const execArgv = ['--import', loaderPath];
      const lts = ltsNode();
      const start = async (side: Side, adapter: Adapter, execPath?: string) => {
        const env: Record<string, string> =
          side === 'ours'
            ? {
                DB_PRIMARY_URL: serverUrl(ports.primary, HTTP_DATABASE),
                DB_REPLICA_URLS: serverUrl(ports.replica1, HTTP_DATABASE),
                DB_APPLICATION_NAME: `bench-ours-http-${adapter}`,
                DB_POOL_MAX_SIZE: '10',
              }
            : {};
        const on = execPath === undefined ? '' : `, Node ${LTS_LINE}`;
        const server = await BenchChild.start(`http server (${NAMES[side]}, ${adapter}${on})`, 'http-server.worker.js', [side, adapter], 60_000, {
          execArgv,
          env,
          ...(execPath === undefined ? {} : { execPath }),
        });
        started.push(server.child);
        return { child: server.child, port: Number(server.ready.port) };
      };
      type Load = [string, { child: BenchChild; port: number }, 'users' | 'ping'];
      /** Runs `loads` interleaved, then stops their apps: one block per Node.js runtime. */
      const measure = async (loads: Load[], ids: readonly number[]): Promise<Record<string, HttpRun[]>> => {
        const measured = await interleaveSides(
          timing.httpReps,
          loads.map(([, server, route]) => () => load(server.child, server.port, timing.httpSeconds, ids, route)),
        );
        await Promise.all([...new Set(loads.map(([, server]) => server.child))].map((c) => c.stop()));
        const runs = Object.fromEntries(loads.map(([name], i) => [name, measured[i]!])) as Record<string, HttpRun[]>;
        const bad = Object.values(runs).flat().reduce((n, r) => n + r.non2xx + r.errors, 0);
        if (bad > 0) {
          throw new Error(`Cannot trust the HTTP figures because ${bad} responses were not 2xx or failed. Please make sure that the cluster is up and both replicas stream.`);
        }
        return runs;
      };
      let ids: readonly number[] | undefined;
      /** Starts the five apps on `execPath` (the bench's own Node when undefined) and runs their eight loads. */
      const runOn = async (execPath?: string): Promise<Record<string, HttpRun[]>> => {
        const oursExpress = await start('ours', 'express', execPath);
        // The sample app creates the users table as it starts; the users are added once.
        ids ??= await seedUsers();
        const rawExpress = await start('raw', 'express', execPath);
        const scopedExpress = await start('raw-scoped', 'express', execPath);
        const oursFastify = await start('ours', 'fastify', execPath);
        const rawFastify = await start('raw', 'fastify', execPath);
        return measure(
          [
            ['ours', oursExpress, 'users'],
            ['raw', rawExpress, 'users'],
            ['scoped', scopedExpress, 'users'],
            ['oursFastify', oursFastify, 'users'],
            ['rawFastify', rawFastify, 'users'],
            ['oursPing', oursExpress, 'ping'],
            ['rawPing', rawExpress, 'ping'],
            ['scopedPing', scopedExpress, 'ping'],
          ],
          ids,
        );
      };
      const runs = await runOn();
      // The same apps on the current LTS, where AsyncLocalStorage no longer runs on promise hooks.
      const ltsRuns = await runOn(lts);
      const ltsVersion = execFileSync(lts, ['--version'], { encoding: 'utf8', timeout: 10_000 }).trim().replace(/^v/, '');
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
      const p99 = (id: string, label: string, a: HttpRun[], b: HttpRun[]) => {
        const ours = median(a.map((r) => r.p99));
        const raw = median(b.map((r) => r.p99));
        return figure({ id, label, ours, raw, reference: RAW, unit: 'ms', value: ours / raw, valueUnit: '×', target: atMost(1.15, '≤ 1.15×') });
      };
      /** CPU per request of both sides (µs, medians) and their per-pair ratio: steadier than throughput on a loaded machine. */
      const cpu = (id: string, label: string, a: HttpRun[], b: HttpRun[], reference: string) =>
        figure({
          id,
          label,
          ours: median(a.map((r) => r.cpuUs)),
          raw: median(b.map((r) => r.cpuUs)),
          reference,
          unit: 'µs/request',
          value: pairedRatio(a.map((r) => r.cpuUs), b.map((r) => r.cpuUs)),
          valueUnit: '×',
          samples: a.map((r, i) => r.cpuUs / b[i]!.cpuUs),
        });
      const ratioIn = (set: Record<string, HttpRun[]>, a: string, b: string) => pairedRatio(rates(set[a]!), rates(set[b]!));
      const ratio = (a: string, b: string) => ratioIn(runs, a, b);
      const scopedRatio = ratio('scoped', 'raw');
      const oursVsScoped = ratio('ours', 'scoped');
      const pingVsScoped = ratio('oursPing', 'scopedPing');
      const node = process.versions.node.split('.')[0];
      for (const [set, tag] of [[runs, `Node ${node}`], [ltsRuns, `Node ${LTS_LINE}`]] as const) {
        for (const [name, runsOf] of Object.entries(set)) {
          log(`  ${tag} ${name.padEnd(12)} ${median(rates(runsOf)).toFixed(0)} req/s p99 ${median(runsOf.map((r) => r.p99))}ms cpu ${median(runsOf.map((r) => r.cpuUs)).toFixed(0)}µs/req`);
        }
      }
      log(`  ratios: express ${ratio('ours', 'raw').toFixed(3)}, fastify ${ratio('oursFastify', 'rawFastify').toFixed(3)}, ours vs raw+scope ${oursVsScoped.toFixed(3)}, ping ${ratio('oursPing', 'rawPing').toFixed(3)}, ping vs raw+scope ${pingVsScoped.toFixed(3)}`);
      log(
        `  Node ${LTS_LINE} ratios: express ${ratioIn(ltsRuns, 'ours', 'raw').toFixed(3)}, fastify ${ratioIn(ltsRuns, 'oursFastify', 'rawFastify').toFixed(3)}, ` +
          `ping ${ratioIn(ltsRuns, 'oursPing', 'rawPing').toFixed(3)}, ping vs raw+scope ${ratioIn(ltsRuns, 'oursPing', 'scopedPing').toFixed(3)}`,
      );
      const scopeCost =
        `A request-scoped AsyncLocalStorage by itself (opened by a middleware, as ours is) takes the raw app to ${scopedRatio.toFixed(3)}× (row "For scale"): on Node ${node} ` +
        'AsyncLocalStorage propagates through promise hooks, which every promise of every request pays once any scope exists ' +
        `(Node 24 and later implement it without them, with AsyncContextFrame: see the Node ${LTS_LINE} rows). The scope is what carries @ReadOnly(), ` +
        `transactions and read-your-writes across awaits; against the raw app with the same request scope, ours is ${oursVsScoped.toFixed(3)}× (row "The library's own share").`;
      const ltsScopeCost =
        `On Node ${LTS_LINE} AsyncLocalStorage runs on AsyncContextFrame, without promise hooks. What /ping still pays is the request scope itself ` +
        `(one Express middleware layer and one AsyncLocalStorage.run per request): the raw app with only that scope is ${ratioIn(ltsRuns, 'scopedPing', 'rawPing').toFixed(3)}× ` +
        `of the raw app on /ping, and ours is ${ratioIn(ltsRuns, 'oursPing', 'scopedPing').toFixed(3)}× of it (rows "Node ${LTS_LINE}: … GET /ping … request scope"). ` +
        'The library opens the scope before routing, so it cannot tell yet whether the route will touch the database.';
      const on = `Node ${node}: `;
      const onLts = `Node ${LTS_LINE}: `;
      return {
        method:
          `Apps in child processes, on Express and on Fastify. Ours: the sample app (sample-app/src AppModule: PoolModule.forRootAsync with library defaults, ` +
          `DB_POOL_MAX_SIZE=10, the request scope opened by the module's middleware / onRequest hook, no global interceptor, health and metrics endpoints) configured with the primary and replica1, ` +
          'so its @ReadOnly() GET /users/:id reads from the same server as the reference. Raw: the same route (the sample id parsing, ' +
          'statement, 404 and body) on a hand-written pg.Pool({ max: 10 }) provider on replica1, given the library session settings ' +
          '(statement_timeout, TimeZone, read-only), plus the sample PingController. A third app adds to raw (Express) only a middleware that runs each request in an AsyncLocalStorage scope, to show ' +
          'what a request scope costs by itself. GET /ping is a route that never touches the database, on ours, on raw and on raw with the request scope (Express). ' +
          `All read ${USERS_ROWS} users in database ${HTTP_DATABASE}. autocannon (${CONNECTIONS} connections, loopback, cycling through the ids) ` +
          `runs ${timing.httpSeconds}s against each app and route in turn (order alternating); medians over ${timing.httpReps} repetitions. ` +
          `Two blocks, one after the other: the apps on the bench's own Node ${process.versions.node}, then the same apps (raw + request scope on Express only) on the current LTS, Node ${ltsVersion} ` +
          `(.node/${LTS_LINE}, installed by \`bash scripts/node-lts.sh install ${LTS_LINE}\`); autocannon runs on the bench's Node in both. ` +
          'The CPU rows divide the CPU time (user + system) each server process spent during a run by the requests it completed: on a machine shared with other work, ' +
          'throughput ratios swing with whatever else runs, CPU per request much less.',
        figures: [
          versus('5.req-per-s', `${on}Express: GET /users/:id, ${CONNECTIONS} connections, both apps reading from replica1: throughput`, runs.ours!, runs.raw!, RAW, {
            target: atLeast(0.95),
            whenNotMet: scopeCost,
          }),
          p99('5.p99', `${on}Express: GET /users/:id, ${CONNECTIONS} connections: p99 latency`, runs.ours!, runs.raw!),
          versus('5.fastify.req-per-s', `${on}Fastify: GET /users/:id, ${CONNECTIONS} connections, both apps reading from replica1: throughput`, runs.oursFastify!, runs.rawFastify!, RAW, {
            target: atLeast(0.95),
            whenNotMet: scopeCost,
          }),
          p99('5.fastify.p99', `${on}Fastify: GET /users/:id, ${CONNECTIONS} connections: p99 latency`, runs.oursFastify!, runs.rawFastify!),
          versus('5.ping', `${on}Express: GET /ping (never touches the database), with the module vs without`, runs.oursPing!, runs.rawPing!, 'the same route without the module', {
            target: atLeast(0.98),
            whenNotMet:
              `The module's request scope is opened for every request, /ping included: the ALS run itself is cheap, but on Node ${node} once a scope exists every promise pays the promise hooks ` +
              `(the raw app with only a request scope: ${scopedRatio.toFixed(3)}× on /users/:id). Against that raw app with the same request scope, /ping with the module is ` +
              `${pingVsScoped.toFixed(3)}× (row "GET /ping … vs the raw app with the same request scope"): what is left is the scope's, not the library's.`,
          }),
          cpu('5.cpu', `${on}Express: GET /users/:id, server CPU time per request`, runs.ours!, runs.raw!, RAW),
          cpu('5.fastify.cpu', `${on}Fastify: GET /users/:id, server CPU time per request`, runs.oursFastify!, runs.rawFastify!, RAW),
          cpu('5.ping.cpu', `${on}Express: GET /ping, server CPU time per request, with the module vs without`, runs.oursPing!, runs.rawPing!, 'the same route without the module'),
          versus('5.ping.vs-request-scope', `${on}Express: GET /ping with the module vs the raw app with the same request-scoped AsyncLocalStorage`, runs.oursPing!, runs.scopedPing!, 'raw app + request scope', {
            target: atLeast(0.98),
          }),
          cpu('5.ping.vs-request-scope.cpu', `${on}Express: GET /ping, server CPU time per request, with the module vs the raw app with the same request scope`, runs.oursPing!, runs.scopedPing!, 'raw app + request scope'),
          cpu('5.vs-request-scope.cpu', `${on}The library's own share in CPU per request: ours vs the raw app with the same request scope (Express)`, runs.ours!, runs.scoped!, 'raw app + request scope'),
          versus('5.request-scope', `${on}For scale: the raw app plus only a request-scoped AsyncLocalStorage middleware (Express)`, runs.scoped!, runs.raw!, RAW),
          versus('5.vs-request-scope', `${on}The library's own share: ours vs the raw app with the same request-scoped AsyncLocalStorage (Express)`, runs.ours!, runs.scoped!, 'raw app + request scope', {
            target: atLeast(0.95),
          }),
          versus('5.lts.req-per-s', `${onLts}Express: GET /users/:id, ${CONNECTIONS} connections, both apps reading from replica1: throughput`, ltsRuns.ours!, ltsRuns.raw!, RAW, {
            target: atLeast(0.95),
          }),
          p99('5.lts.p99', `${onLts}Express: GET /users/:id, ${CONNECTIONS} connections: p99 latency`, ltsRuns.ours!, ltsRuns.raw!),
          versus('5.lts.fastify.req-per-s', `${onLts}Fastify: GET /users/:id, ${CONNECTIONS} connections, both apps reading from replica1: throughput`, ltsRuns.oursFastify!, ltsRuns.rawFastify!, RAW, {
            target: atLeast(0.95),
          }),
          p99('5.lts.fastify.p99', `${onLts}Fastify: GET /users/:id, ${CONNECTIONS} connections: p99 latency`, ltsRuns.oursFastify!, ltsRuns.rawFastify!),
          versus('5.lts.ping', `${onLts}Express: GET /ping (never touches the database), with the module vs without`, ltsRuns.oursPing!, ltsRuns.rawPing!, 'the same route without the module', {
            target: atLeast(0.98),
            whenNotMet: ltsScopeCost,
          }),
          cpu('5.lts.cpu', `${onLts}Express: GET /users/:id, server CPU time per request`, ltsRuns.ours!, ltsRuns.raw!, RAW),
          cpu('5.lts.fastify.cpu', `${onLts}Fastify: GET /users/:id, server CPU time per request`, ltsRuns.oursFastify!, ltsRuns.rawFastify!, RAW),
          cpu('5.lts.ping.cpu', `${onLts}Express: GET /ping, server CPU time per request, with the module vs without`, ltsRuns.oursPing!, ltsRuns.rawPing!, 'the same route without the module'),
          versus('5.lts.ping.request-scope', `${onLts}For scale: GET /ping on the raw app plus only a request-scoped AsyncLocalStorage middleware (Express)`, ltsRuns.scopedPing!, ltsRuns.rawPing!, 'the same route without the module'),
          versus('5.lts.ping.vs-request-scope', `${onLts}Express: GET /ping with the module vs the raw app with the same request-scoped AsyncLocalStorage`, ltsRuns.oursPing!, ltsRuns.scopedPing!, 'raw app + request scope', {
            target: atLeast(0.98),
          }),
          versus('5.lts.request-scope', `${onLts}For scale: the raw app plus only a request-scoped AsyncLocalStorage middleware (Express)`, ltsRuns.scoped!, ltsRuns.raw!, RAW),
          versus('5.lts.vs-request-scope', `${onLts}The library's own share: ours vs the raw app with the same request-scoped AsyncLocalStorage (Express)`, ltsRuns.ours!, ltsRuns.scoped!, 'raw app + request scope', {
            target: atLeast(0.95),
          }),
        ],
        details: { [`node ${process.versions.node}`]: runs, [`node ${ltsVersion}`]: ltsRuns },
      };
    } finally {
      await Promise.all(started.map((c) => c.stop()));
    }
  },
};
