import { Injectable, Module, type CanActivate, type ExecutionContext, type INestApplication } from '@nestjs/common';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import { Counter, Registry } from 'prom-client';
import request from 'supertest';
import { PoolModule, type PoolModuleRootOptions } from 'nestjs-pg-pools';
import { nodeOptions } from '../support/cluster.js';
import { parsePrometheusText } from '../support/observability.js';
import { waitForNoSessions } from '../support/sessions.js';

// How the metrics endpoints are registered: configurable paths, guards, a user registry, once for
// several databases (the first import's options win), forRootAsync, off switches, production
// preset, global prefix. Primary only, small pools.

const APP = 'e2e-metrics-options';

@Injectable()
class MetricsTokenGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const req = context.switchToHttp().getRequest<{ headers: Record<string, string | undefined>; query: Record<string, string | undefined> }>();
    return req.headers['x-metrics-token'] === 'let-me-in' || req.query.token === 'let-me-in';
  }
}

function dbOptions(extra: Partial<PoolModuleRootOptions> = {}): PoolModuleRootOptions {
  return {
    preset: 'test',
    applicationName: APP,
    primary: nodeOptions('primary'),
    min: 1,
    max: 2,
    sizingAdvisor: false,
    alerts: { log: false },
    ...extra,
  };
}

async function start(imports: unknown[], prefix?: string): Promise<INestApplication> {
  const moduleRef = await Test.createTestingModule({ imports: imports as never[] }).compile();
  const app = moduleRef.createNestApplication({ logger: ['error'] });
  if (prefix) app.setGlobalPrefix(prefix);
  await app.init();
  return app;
}

describe('metrics endpoint options (real primary)', () => {
  let app: INestApplication | undefined;

  afterEach(async () => {
    await app?.close();
    app = undefined;
  });

  afterAll(async () => {
    await waitForNoSessions(APP, { nodes: ['primary'], timeoutMs: 5000, everyMs: 100 });
  });

  it('serves the three endpoints on their default paths', async () => {
    app = await start([PoolModule.forRoot(dbOptions())]);
    const server = request(app.getHttpServer());
    await server.get('/metrics').expect(200).expect('content-type', /text\/plain/).expect('cache-control', 'no-store');
    await server.get('/metrics/db-pool').expect(200).expect('content-type', /json/);
    const page = await server.get('/metrics/db-pool/dashboard').expect(200).expect('content-type', 'text/html; charset=utf-8');
    expect(page.headers['content-security-policy']).toContain("default-src 'none'");
    expect(page.text).toContain('"jsonUrl":"/metrics/db-pool"');
  });

  it('uses configured paths, protects every endpoint with the guards, and fills the given registry', async () => {
    const registry = new Registry();
    const own = new Counter({ name: 'app_requests_total', help: 'the app', registers: [registry] });
    own.inc(3);
    app = await start([
      PoolModule.forRoot(dbOptions({ metrics: { prometheusPath: 'ops/prom', jsonPath: 'ops/pools', registry, guards: [MetricsTokenGuard] } })),
    ]);
    const server = request(app.getHttpServer());
    await server.get('/metrics').expect(404);
    await server.get('/metrics/db-pool').expect(404);
    for (const path of ['/ops/prom', '/ops/pools', '/ops/pools/dashboard']) {
      await server.get(path).expect(403);
      await server.get(path).set('x-metrics-token', 'wrong').expect(403);
      await server.get(path).set('x-metrics-token', 'let-me-in').expect(200);
    }
    const page = await server.get('/ops/pools/dashboard?token=let-me-in').expect(200);
    expect(page.text).toContain('"jsonUrl":"/ops/pools"');

    const text = (await server.get('/ops/prom').set('x-metrics-token', 'let-me-in').expect(200)).text;
    const families = parsePrometheusText(text);
    expect(families.get('app_requests_total')!.samples[0]!.value).toBe(3);
    expect(families.get('db_pool_connections')!.samples.length).toBe(3);
    expect(await registry.metrics()).toContain('db_pool_connections{database="default",node="primary",role="primary",state="idle"}');

    await app.close();
    app = undefined;
    expect(registry.getSingleMetric('db_pool_connections')).toBeUndefined();
    expect(registry.getSingleMetric('app_requests_total')).toBe(own);
  });

  it('registers the endpoints once for several databases, with the first import\'s options, showing every database', async () => {
    app = await start([
      PoolModule.forRoot(dbOptions({ metrics: { prometheusPath: 'first/prom', jsonPath: 'first/pools' } })),
      PoolModule.forRoot(dbOptions({ name: 'analytics', metrics: { prometheusPath: 'second/prom', jsonPath: 'second/pools' } })),
      PoolModule.forRoot(dbOptions({ name: 'audit' })),
    ]);
    const server = request(app.getHttpServer());
    for (const path of ['/second/prom', '/second/pools', '/metrics', '/metrics/db-pool']) await server.get(path).expect(404);
    const json = (await server.get('/first/pools').expect(200)).body;
    expect(Object.keys(json.databases)).toEqual(['default', 'analytics', 'audit']);
    const prom = parsePrometheusText((await server.get('/first/prom').expect(200)).text);
    const databases = new Set(prom.get('db_pool_max')!.samples.map((s) => s.labels.database));
    expect([...databases]).toEqual(['default', 'analytics', 'audit']);
  });

  it('registers once also when every database uses the default metrics options', async () => {
    app = await start([PoolModule.forRoot(dbOptions()), PoolModule.forRoot(dbOptions({ name: 'analytics' }))]);
    const server = request(app.getHttpServer());
    const prom = parsePrometheusText((await server.get('/metrics').expect(200)).text);
    expect(prom.get('db_pool_max')!.samples.map((s) => s.labels.database)).toEqual(['default', 'analytics']);
    const router = (app.getHttpAdapter().getInstance() as { router?: { stack: Array<{ route?: { path: string } }> }; _router?: { stack: Array<{ route?: { path: string } }> } });
    const stack = (router.router ?? router._router)!.stack;
    expect(stack.filter((l) => l.route?.path === '/metrics').length).toBe(1);
    expect(stack.filter((l) => l.route?.path === '/metrics/db-pool').length).toBe(1);
  });

  it('takes metrics from the static part of forRootAsync', async () => {
    @Module({})
    class ConfigModule {}
    app = await start([
      PoolModule.forRootAsync({
        imports: [ConfigModule],
        useFactory: async () => dbOptions(),
        metrics: { jsonPath: 'async/pools', prometheusPath: false },
      }),
    ]);
    const server = request(app.getHttpServer());
    await server.get('/metrics').expect(404);
    const json = (await server.get('/async/pools').expect(200)).body;
    expect(json.databases.default.nodes.primary.role).toBe('primary');
    await server.get('/async/pools/dashboard').expect(200);
  });

  it('registers nothing with enabled: false, and no dashboard with dashboard: false', async () => {
    app = await start([PoolModule.forRoot(dbOptions({ metrics: { enabled: false } }))]);
    let server = request(app.getHttpServer());
    for (const path of ['/metrics', '/metrics/db-pool', '/metrics/db-pool/dashboard']) await server.get(path).expect(404);
    await app.close();

    app = await start([PoolModule.forRoot(dbOptions({ metrics: { dashboard: false } }))]);
    server = request(app.getHttpServer());
    await server.get('/metrics/db-pool').expect(200);
    await server.get('/metrics/db-pool/dashboard').expect(404);
  });

  it('hides the dashboard with the production preset unless metrics.dashboard is true', async () => {
    app = await start([PoolModule.forRoot(dbOptions({ preset: 'production', min: 1, max: 2 }))]);
    let server = request(app.getHttpServer());
    const res = await server.get('/metrics/db-pool/dashboard').expect(404);
    expect(res.body.message).toBe(
      'Cannot show the pool dashboard because it is off with the production preset. Please make sure that metrics.dashboard is true if you want it in production (and protect it with metrics.guards).',
    );
    await server.get('/metrics/db-pool').expect(200);
    await app.close();

    app = await start([PoolModule.forRoot(dbOptions({ preset: 'production', min: 1, max: 2, metrics: { dashboard: true } }))]);
    server = request(app.getHttpServer());
    await server.get('/metrics/db-pool/dashboard').expect(200);
  });

  it('keeps a global prefix in front of the paths and in the page\'s JSON URL', async () => {
    app = await start([PoolModule.forRoot(dbOptions())], 'api');
    const server = request(app.getHttpServer());
    await server.get('/metrics').expect(404);
    await server.get('/api/metrics').expect(200);
    const page = await server.get('/api/metrics/db-pool/dashboard').expect(200);
    expect(page.text).toContain('"jsonUrl":"/api/metrics/db-pool"');
  });

  it('works on Fastify too: content types, guards and the page\'s JSON URL', async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [PoolModule.forRoot(dbOptions({ metrics: { guards: [MetricsTokenGuard] } }))],
    }).compile();
    const fastify = moduleRef.createNestApplication<NestFastifyApplication>(new FastifyAdapter(), { logger: ['error'] });
    app = fastify;
    fastify.setGlobalPrefix('api');
    await fastify.init();
    await fastify.getHttpAdapter().getInstance().ready();
    const server = request(fastify.getHttpServer());
    await server.get('/api/metrics').expect(403);
    const prom = await server.get('/api/metrics').set('x-metrics-token', 'let-me-in').expect(200).expect('content-type', /^text\/plain; version=0\.0\.4/);
    expect(parsePrometheusText(prom.text).get('db_pool_max')!.samples).toHaveLength(1);
    await server.get('/api/metrics/db-pool').set('x-metrics-token', 'let-me-in').expect(200).expect('content-type', /json/);
    const page = await server.get('/api/metrics/db-pool/dashboard?token=let-me-in').expect(200).expect('content-type', 'text/html; charset=utf-8');
    expect(page.text).toContain('"jsonUrl":"/api/metrics/db-pool"');
    expect(page.headers['content-security-policy']).toContain("connect-src 'self'");
  });

  it('rejects bad metrics options at forRoot with one error naming the field', () => {
    expect(() => PoolModule.forRoot(dbOptions({ metrics: { jsonPath: 'a?b' } }))).toThrow(
      'Invalid option `metrics.jsonPath`: expected a non-empty URL path without spaces, "?" or "#", such as "metrics", got "a?b" (string).',
    );
    expect(() => PoolModule.forRootAsync({ useFactory: () => dbOptions(), metrics: { guards: ['x'] as never } })).toThrow('`metrics.guards[0]`');
  });
});
