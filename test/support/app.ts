import type { INestApplication, ModuleMetadata } from '@nestjs/common';
import { Test, type TestingModule } from '@nestjs/testing';
import { DatabaseService, getPoolToken, PoolModule, type PoolEvent, type PoolModuleRootOptions } from 'nestjs-pg-pools';
import type { Pool } from 'pg';
import type { Subscription } from 'rxjs';
import type { PoolCluster } from '../../lib/core/pool-cluster.js';
import { getClusterToken } from '../../lib/pool.utils.js';
import { nodeOptions, type ClusterNodeName } from './cluster.js';
import { CapturingLogger } from './logger.js';
import { TcpRelay } from './tcp-relay.js';

// The one way the e2e tests and the chaos driver start an application: `PoolModule.forRoot(options)`
// in a Nest application whose log lines are captured and whose event stream is recorded, the
// same behind a TCP relay (so a test can take "the network" away), and the error a start fails with.

export interface TestApp {
  app: INestApplication;
  db: DatabaseService;
  /** The database's internals (node pools, counters, routing state) for white-box checks. */
  cluster: PoolCluster;
  logger: CapturingLogger;
  events: PoolEvent[];
  /** The application's URL when it listens (`setup.listen`), else ''. */
  url: string;
  /** The primary's pg.Pool-compatible pool, and the replicas'. */
  pool(): Pool;
  replicaPools(): Pool[];
  /** Closes the application once (later calls share the first). */
  close(): Promise<void>;
}

/** What a suite adds around its `PoolModule.forRoot(options)`. */
export interface AppSetup {
  /** More modules beside the pool module (e.g. TerminusModule). */
  imports?: ModuleMetadata['imports'];
  controllers?: ModuleMetadata['controllers'];
  providers?: ModuleMetadata['providers'];
  /** The logger to capture into (a new one by default). */
  logger?: CapturingLogger;
  /** Print the first line of each captured message too. */
  echoLogs?: boolean;
  /** Listen on an ephemeral loopback port (for HTTP tests: `url`) instead of only `init()`. */
  listen?: boolean;
}

/**
 * The one app builder of the e2e tests: a Nest application with `PoolModule.forRoot(options)` exactly
 * as given (plus `setup`), its log lines captured and its event stream recorded.
 */
export async function buildApp(options: PoolModuleRootOptions, setup: AppSetup = {}): Promise<TestApp> {
  const moduleRef = await Test.createTestingModule({
    imports: [PoolModule.forRoot(options), ...(setup.imports ?? [])],
    controllers: setup.controllers ?? [],
    providers: setup.providers ?? [],
  }).compile();
  const logger = setup.logger ?? new CapturingLogger(setup.echoLogs);
  const app = moduleRef.createNestApplication({ logger });
  if (setup.listen) await app.listen(0, '127.0.0.1');
  else await app.init();
  const db = app.get(DatabaseService);
  const cluster = app.get<PoolCluster>(getClusterToken(options.name));
  const events: PoolEvent[] = [];
  const subscription: Subscription = db.events$.subscribe((e) => events.push(e));
  let closed: Promise<void> | undefined;
  return {
    app,
    db,
    cluster,
    logger,
    events,
    url: setup.listen ? await app.getUrl() : '',
    pool: () => app.get<Pool>(getPoolToken(options.name)),
    replicaPools: () => app.get<Pool[]>(getPoolToken(options.name, 'replicas')),
    close: () => {
      closed ??= app.close().finally(() => subscription.unsubscribe());
      return closed;
    },
  };
}

/** `buildApp` with the quiet defaults of the hygiene and chaos tests: no sizing advisor, no metrics, no alerts. */
export function startApp(options: PoolModuleRootOptions, echoLogs = false): Promise<TestApp> {
  return buildApp({ sizingAdvisor: false, metrics: { enabled: false }, alerts: { enabled: false }, ...options }, { echoLogs });
}

/**
 * `startApp(options)` with the primary reached through a new TcpRelay in front of the real `node` (the primary by default),
 * so the test can take "the network" away; `t.close()` closes the application, then the relay.
 */
export async function startAppBehindRelay(options: Omit<PoolModuleRootOptions, 'primary'>, node: ClusterNodeName = 'primary'): Promise<{ t: TestApp; relay: TcpRelay }> {
  const relay = await TcpRelay.to(node);
  let app: TestApp;
  try {
    app = await startApp({ ...options, primary: nodeOptions(node, { port: relay.port }) });
  } catch (err) {
    await relay.close();
    throw err;
  }
  return { t: { ...app, close: () => app.close().finally(() => relay.close()) }, relay };
}

/** The error `PoolModule.forRoot(options)` fails with while the application starts (or `undefined`). */
export async function startupError(options: PoolModuleRootOptions): Promise<unknown> {
  let app: INestApplication | undefined;
  try {
    const moduleRef = await Test.createTestingModule({ imports: [PoolModule.forRoot({ sizingAdvisor: false, ...options })] }).compile();
    app = moduleRef.createNestApplication({ logger: false });
    await app.init();
    return undefined;
  } catch (err) {
    return err;
  } finally {
    await app?.close();
  }
}

const startedModules: TestingModule[] = [];

/**
 * A testing module with `imports`, initialised without HTTP (for start-up, shutdown and TLS checks);
 * `closeStartedModules()` (an afterEach) closes whatever a test left open.
 */
export async function startModules(imports: NonNullable<ModuleMetadata['imports']>, logger?: CapturingLogger | false): Promise<TestingModule> {
  const builder = Test.createTestingModule({ imports });
  if (logger) builder.setLogger(logger);
  const app = await builder.compile();
  startedModules.push(app);
  await app.init();
  return app;
}

/** Closes one module of `startModules` now; resolves with how long `close()` took (ms). */
export async function closeModule(app: TestingModule): Promise<number> {
  startedModules.splice(startedModules.indexOf(app), 1);
  const t0 = Date.now();
  await app.close();
  return Date.now() - t0;
}

/** Closes every module `startModules` opened and no test closed. */
export async function closeStartedModules(): Promise<void> {
  for (const app of startedModules.splice(0)) await app.close();
}
