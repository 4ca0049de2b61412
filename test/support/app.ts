import type { INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { DatabaseService, PoolModule, type PoolEvent, type PoolModuleRootOptions } from 'nestjs-pg-pools';
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
  close(): Promise<void>;
}

/** A Nest application with one `PoolModule.forRoot(options)`, its event stream recorded. */
export async function startApp(options: PoolModuleRootOptions, echoLogs = false): Promise<TestApp> {
  const moduleRef = await Test.createTestingModule({
    imports: [PoolModule.forRoot({ sizingAdvisor: false, metrics: { enabled: false }, alerts: { enabled: false }, ...options })],
  }).compile();
  const logger = new CapturingLogger(echoLogs);
  const app = moduleRef.createNestApplication({ logger });
  await app.init();
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
    close: () => {
      closed ??= app.close().finally(() => subscription.unsubscribe());
      return closed;
    },
  };
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
