import { jest } from '@jest/globals';
import { execFileSync, spawnSync } from 'node:child_process';
import path from 'node:path';
import { Controller, Get, Header, type DynamicModule, type INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { Counter, register } from 'prom-client';
import request from 'supertest';
import { DatabaseService, PoolModule, type PoolModuleRootOptions } from 'nestjs-pg-pools';
import { clusterConfig, nodeOptions, replicaOptions, repoRoot } from '../support/cluster.js';
import { parsePrometheusText, sampleValue } from '../support/observability.js';

// An application that already has its own prom-client metrics and its own /metrics (on
// prom-client's global registry, as @willsoto/nestjs-prometheus does) gets the pool metrics on
// that one endpoint: no duplicate-registration error, also when a second app starts in the same
// process, and the scrape passes `promtool check metrics` (Debian package prometheus, installed
// by scripts/install-promtool.sh when missing).
jest.setTimeout(60_000);

const APP = 'e2e-prom-interop';
let seq = 0;

function promtool(): string {
  const found = spawnSync('sh', ['-c', 'command -v promtool'], { encoding: 'utf8' }).stdout.trim();
  if (found) return found;
  execFileSync('bash', [path.join(repoRoot, 'scripts/install-promtool.sh')], { stdio: 'inherit', timeout: 20 * 60_000 });
  return '/usr/bin/promtool';
}

/** `promtool check metrics` on the scrape: exit code and what it printed (lint problems). */
function promtoolCheck(text: string): { status: number | null; output: string } {
  const run = spawnSync(promtool(), ['check', 'metrics'], { input: text, encoding: 'utf8', timeout: 30_000 });
  return { status: run.status, output: `${run.stdout}${run.stderr}`.trim() };
}

/** The `db_*` families of a scrape (HELP, TYPE and samples), for linting only what this library exports. */
function poolFamilies(text: string): string {
  return text
    .split('\n')
    .filter((line) => /^(# (HELP|TYPE) )?db_/.test(line))
    .join('\n')
    .concat('\n');
}

/** The application's own metrics endpoint on the global registry (the controller @willsoto/nestjs-prometheus generates). */
@Controller('metrics')
class AppMetricsController {
  @Get()
  @Header('content-type', register.contentType)
  metrics(): Promise<string> {
    return register.metrics();
  }
}

const appRequests = () =>
  (register.getSingleMetric('app_requests_total') as Counter | undefined) ?? new Counter({ name: 'app_requests_total', help: 'Requests served by the app.' });

function poolModule(max: number): DynamicModule {
  const options: PoolModuleRootOptions = {
    primary: nodeOptions('primary'),
    replicas: replicaOptions(),
    applicationName: `${APP}-${++seq}`,
    min: 1,
    max,
    sizingAdvisor: false,
    env: {},
    metrics: { registry: register, prometheusPath: false },
  };
  return PoolModule.forRoot(options);
}

async function startApp(imports: DynamicModule[], controllers: Array<new (...args: never[]) => unknown> = []): Promise<INestApplication> {
  const moduleRef = await Test.createTestingModule({ imports, controllers }).compile();
  const app = moduleRef.createNestApplication({ logger: false });
  await app.init();
  return app;
}

afterAll(() => register.clear());

describe('pool metrics on an application\'s own prom-client registry', () => {
  it('one /metrics with the app\'s and the pools\' metrics; a second app in the same process re-registers without errors; promtool accepts it', async () => {
    register.clear();
    const counter = appRequests();
    for (const max of [4, 6]) {
      const app = await startApp([poolModule(max)], [AppMetricsController]);
      try {
        counter.inc();
        const db = app.get(DatabaseService);
        await db.query('SELECT 1');
        await db.replica.query('SELECT 1');
        const res = await request(app.getHttpServer()).get('/metrics').expect(200);
        const families = parsePrometheusText(res.text);
        expect(sampleValue(families, 'app_requests_total', {})).toBe(max === 4 ? 1 : 2);
        expect(sampleValue(families, 'db_pool_max', { database: 'default', node: 'primary', role: 'primary' })).toBe(max);
        expect(sampleValue(families, 'db_routing_total', { database: 'default', node: 'primary', role: 'primary', reason: 'write' })).toBeGreaterThanOrEqual(1);
        // Every family once: no duplicate # TYPE lines from the two apps.
        const types = res.text.split('\n').filter((line) => line.startsWith('# TYPE '));
        expect(new Set(types).size).toBe(types.length);
        expect(res.text).not.toContain(clusterConfig.password);
        const lint = promtoolCheck(res.text);
        expect(lint).toEqual({ status: 0, output: '' });
      } finally {
        await app.close();
      }
      // The pools' metrics leave the shared registry with their app; the app's own stay.
      expect(register.getSingleMetric('db_pool_connections')).toBeUndefined();
      expect(register.getSingleMetric('app_requests_total')).toBe(counter);
    }
  });

  it('promtool check metrics fails on a broken scrape (the check can fail)', () => {
    const broken = '# TYPE x_total counter\n# TYPE x_total counter\nx_total 1\n';
    expect(promtoolCheck(broken).status).not.toBe(0);
  });
});

// @willsoto/nestjs-prometheus is CommonJS and require()s @nestjs/common. Jest (not Node) can load
// NestJS 12, which is ESM-only, that way only on Node >= 24.9; on Node 20 this block runs in the
// NestJS 11 run (npm run test:nest11) and in the Node 26 run, which set PGPOOLS_REQUIRE_WILLSOTO=1
// so that it can never be skipped there.
const willsoto = await import('@willsoto/nestjs-prometheus').catch((err: unknown) => {
  if (process.env.PGPOOLS_REQUIRE_WILLSOTO === '1') throw err;
  return undefined;
});
const withWillsoto = willsoto ? describe : describe.skip;

withWillsoto('next to @willsoto/nestjs-prometheus', () => {
  it('its /metrics serves its default metrics and the pool metrics; promtool accepts the scrape', async () => {
    register.clear();
    const app = await startApp([willsoto!.PrometheusModule.register({ defaultMetrics: { enabled: true } }), poolModule(5)]);
    try {
      const db = app.get(DatabaseService);
      await db.replica.query('SELECT 1');
      const res = await request(app.getHttpServer()).get('/metrics').expect(200);
      const families = parsePrometheusText(res.text);
      expect(families.has('process_cpu_user_seconds_total')).toBe(true);
      expect(sampleValue(families, 'db_pool_max', { database: 'default', node: 'primary', role: 'primary' })).toBe(5);
      expect(families.get('db_pool_connections')!.samples.map((s) => s.labels.node)).toEqual(expect.arrayContaining(['primary', 'replica-1', 'replica-2']));
      expect(res.text).toMatch(new RegExp(`db_pool_connections\\{database="default",node="primary",role="primary",state="idle"\\} [1-5]`));
      // prom-client's own default metrics do not all pass promtool's lint (nodejs_active_handles_total
      // is a gauge): every finding must be about them, none about the pool metrics.
      const findings = promtoolCheck(res.text).output.split('\n').filter(Boolean);
      expect(findings.filter((line) => line.startsWith('db_'))).toEqual([]);
      expect(promtoolCheck(poolFamilies(res.text))).toEqual({ status: 0, output: '' });
      expect(poolFamilies(res.text)).toContain('# TYPE db_pool_connections gauge');
    } finally {
      await app.close();
    }
  });
});
