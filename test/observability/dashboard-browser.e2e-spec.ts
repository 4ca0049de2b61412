import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Body, Controller, Get, Module, Post, Query, type INestApplication, type Type } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { DatabaseService, PoolModule, ReadOnly } from 'nestjs-pg-pools';
import { nodeOptions } from '../support/cluster.js';
import { waitForNoSessions } from '../support/sessions.js';
import { waitFor } from '../support/wait.js';

// Opens the live dashboard of a running app in headless Debian Chromium (playwright-core, no
// browser download) under a bounded read/write load, checks that the cards and charts render
// the live numbers of /metrics/db-pool, and saves a screenshot: under build/ (git-ignored) in
// `npm test`, so a test run leaves the tree clean; `npm run docs:dashboard` writes the committed
// docs/dashboard.png (PGPOOLS_DASHBOARD_SCREENSHOT). Uses the sample app's AppModule when
// sample-app/src/app.module.ts exists, else a module of the same shape.

const CHROMIUM = '/usr/bin/chromium';
const APP = 'e2e-dashboard-browser';
const FALLBACK_TABLE = 'dashboard_e2e_users';
const RUN = `dashboard-e2e-${process.pid}-${Date.now()}`;
const ROOT = process.cwd();
const SAMPLE_MODULE = path.join(ROOT, 'sample-app/src/app.module.ts');
const SCREENSHOT = path.resolve(ROOT, process.env.PGPOOLS_DASHBOARD_SCREENSHOT ?? 'build/dashboard.png');
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-quic',
  '--no-first-run',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
];

/** The routes of the sample app's UsersController that the load uses, on a table of this test. */
@Controller('users')
class ShapeUsersController {
  constructor(private readonly db: DatabaseService) {}

  @Get()
  @ReadOnly()
  async list(@Query('limit') limit = '20') {
    const res = await this.db.query(`SELECT id, name, email FROM ${FALLBACK_TABLE} ORDER BY id DESC LIMIT $1`, [Number(limit)]);
    return { data: res.rows };
  }

  @Post()
  async create(@Body() body: { name: string; email: string }) {
    const res = await this.db.query(`INSERT INTO ${FALLBACK_TABLE} (name, email) VALUES ($1, $2) RETURNING id, name, email`, [body.name, body.email]);
    return { data: res.rows[0] };
  }
}

@Module({
  imports: [
    PoolModule.forRoot({
      applicationName: APP,
      primary: nodeOptions('primary'),
      replicas: [nodeOptions('replica1'), nodeOptions('replica2')],
      sizingAdvisor: false,
      alerts: { log: false },
    }),
  ],
  controllers: [ShapeUsersController],
})
class SampleShapeModule {}

async function appModule(): Promise<{ module: Type; source: 'sample app' | 'test module' }> {
  if (!existsSync(SAMPLE_MODULE)) return { module: SampleShapeModule, source: 'test module' };
  process.env.DB_APPLICATION_NAME = APP;
  const specifier = '../../sample-app/src/app.module.js';
  const loaded = (await import(specifier)) as { AppModule?: Type };
  if (typeof loaded.AppModule !== 'function') throw new Error('Cannot use the sample app because sample-app/src/app.module.ts exports no AppModule class.');
  return { module: loaded.AppModule, source: 'sample app' };
}

function ensureChromium(): void {
  if (existsSync(CHROMIUM)) return;
  execFileSync('bash', [path.join(ROOT, 'scripts/install-chromium.sh')], { stdio: 'inherit', timeout: 20 * 60_000 });
}

interface Card {
  node: string;
  role: string;
  at: number;
  size: number;
  idle: number;
  inUse: number;
  waiting: number;
  min: number;
  max: number;
  acquireP95: number;
  routedReads: number;
  routedWrites: number;
  acquired: number;
  samples: number;
  shownInUse: string;
  shownIdle: string;
  shownWaiting: string;
  connectionsPoints: number;
  acquirePoints: number;
  suggestedMax: string;
  sizingAdvice: string;
  shownSizing: string;
  preparedHits: number;
  preparedMisses: number;
  preparedEvictions: number;
  preparedInvalidations: number;
}

async function readCards(page: Page): Promise<Card[]> {
  return page.$$eval('article.node', (els) =>
    els.map((el) => {
      const d = (k: string) => el.getAttribute(`data-${k}`) ?? '';
      const n = (k: string) => Number(d(k));
      const text = (sel: string) => el.querySelector(sel)?.textContent ?? '';
      const points = (chart: string) => Number(el.querySelector(`canvas[data-chart="${chart}"]`)?.getAttribute('data-points') ?? '0');
      return {
        node: d('node'), role: d('role'), at: n('at'), size: n('size'), idle: n('idle'), inUse: n('in-use'), waiting: n('waiting'),
        min: n('min'), max: n('max'), acquireP95: n('acquire-p95'), routedReads: n('routed-reads'), routedWrites: n('routed-writes'),
        acquired: n('acquired'), samples: n('samples'), shownInUse: text('[data-value="inuse"]'), shownIdle: text('[data-value="idle"]'),
        shownWaiting: text('[data-value="waiting"]'), connectionsPoints: points('connections'), acquirePoints: points('acquire-p95'),
        suggestedMax: d('suggested-max'), sizingAdvice: d('sizing-advice'), shownSizing: text('[data-sizing]'),
        preparedHits: n('prepared-hits'), preparedMisses: n('prepared-misses'), preparedEvictions: n('prepared-evictions'), preparedInvalidations: n('prepared-invalidations'),
      };
    }),
  );
}

describe('dashboard in headless Chromium (real cluster, under load)', () => {
  let app: INestApplication;
  let db: DatabaseService;
  let baseUrl: string;
  let context: BrowserContext | undefined;
  let userDataDir: string;
  let source: 'sample app' | 'test module' | undefined;
  const savedAppName = process.env.DB_APPLICATION_NAME;
  let stopLoad = false;
  let load: Promise<{ reads: number; writes: number; errors: string[] }> | undefined;
  const pageResponses = new Map<number, { databases: Record<string, { nodes: Record<string, any> }> }>();

  beforeAll(async () => {
    ensureChromium();
    const chosen = await appModule();
    source = chosen.source;
    const moduleRef = await Test.createTestingModule({ imports: [chosen.module] }).compile();
    app = moduleRef.createNestApplication({ logger: ['error'] });
    await app.listen(0, '127.0.0.1');
    baseUrl = `http://127.0.0.1:${(app.getHttpServer().address() as AddressInfo).port}`;
    db = app.get(DatabaseService);
    const table = source === 'sample app' ? 'users' : FALLBACK_TABLE;
    if (source === 'test module') {
      await db.primary.query(`CREATE TABLE IF NOT EXISTS ${FALLBACK_TABLE} (id bigserial PRIMARY KEY, name text NOT NULL, email text NOT NULL UNIQUE)`);
    }
    for (const pool of db.replica.pools) {
      await waitFor(`table ${table} on every replica`, async () => (await pool.query<{ t: string | null }>('SELECT to_regclass($1) AS t', [table])).rows[0]!.t !== null);
    }
    userDataDir = mkdtempSync(path.join(os.tmpdir(), 'pool-dashboard-chromium-'));
  }, 25 * 60_000);


  afterAll(async () => {
    stopLoad = true;
    await load;
    await context?.close();
    if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
    if (db && source === 'sample app') await db.primary.query("DELETE FROM users WHERE email LIKE $1", [`${RUN}-%`]);
    if (db && source === 'test module') await db.primary.query(`DROP TABLE IF EXISTS ${FALLBACK_TABLE}`);
    await app?.close();
    if (savedAppName === undefined) delete process.env.DB_APPLICATION_NAME;
    else process.env.DB_APPLICATION_NAME = savedAppName;
    await waitForNoSessions(APP, { timeoutMs: 5000, everyMs: 100 });
  }, 60_000);

  /** Writes (POST /users, on the primary) and reads (GET /users, @ReadOnly on the replicas) over HTTP, in waves. */
  function startLoad(deadlineMs: number): Promise<{ reads: number; writes: number; errors: string[] }> {
    const stats = { reads: 0, writes: 0, errors: [] as string[] };
    const until = Date.now() + deadlineMs;
    const worker = async (i: number) => {
      let n = 0;
      while (!stopLoad && Date.now() < until) {
        n++;
        const wave = Math.floor(Date.now() / 3000) % 3;
        if (i >= 8 && wave !== 2) {
          await new Promise((r) => setTimeout(r, 100));
          continue;
        }
        try {
          if (i % 4 === 0) {
            const res = await fetch(`${baseUrl}/users`, {
              method: 'POST',
              headers: { 'content-type': 'application/json' },
              body: JSON.stringify({ name: `Dashboard load ${i}`, email: `${RUN}-${i}-${n}@example.test` }),
            });
            if (res.status !== 201) stats.errors.push(`POST /users ${res.status} ${await res.text()}`);
            else stats.writes++;
          } else {
            const res = await fetch(`${baseUrl}/users?limit=20`);
            if (res.status !== 200) stats.errors.push(`GET /users ${res.status} ${await res.text()}`);
            else stats.reads++;
          }
        } catch (err) {
          stats.errors.push(String((err as Error).message));
        }
        if (wave === 0) await new Promise((r) => setTimeout(r, 20 + Math.random() * 40));
      }
    };
    return Promise.all(Array.from({ length: 24 }, (_, i) => worker(i))).then(() => stats);
  }

  it('renders live per-node charts whose numbers match /metrics/db-pool, and saves a screenshot', async () => {
    load = startLoad(150_000);
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1400, height: 1000 },
      deviceScaleFactor: 1,
      timeout: 60_000,
    });
    const page = context.pages()[0] ?? (await context.newPage());
    const pageErrors: string[] = [];
    page.on('pageerror', (err) => pageErrors.push(err.message));
    page.on('console', (msg) => {
      if (msg.type() === 'error') pageErrors.push(msg.text());
    });
    page.on('response', (res) => {
      if (new URL(res.url()).pathname === '/metrics/db-pool' && res.status() === 200) {
        res.json().then((body) => pageResponses.set(body.at, body), () => undefined);
      }
    });
    const external: string[] = [];
    page.on('request', (req) => {
      if (!req.url().startsWith(baseUrl)) external.push(req.url());
    });

    const response = await page.goto(`${baseUrl}/metrics/db-pool/dashboard`, { waitUntil: 'load', timeout: 30_000 });
    expect(response?.status()).toBe(200);

    await waitFor('three node cards after five polls', async () => {
      const polls = Number(await page.getAttribute('body', 'data-polls'));
      return polls >= 5 && (await page.locator('article.node').count()) === 3;
    }, 30_000, 200);

    // Every number a card shows is the one the page received from /metrics/db-pool.
    const cards = await readCards(page);
    expect(cards.map((c) => [c.node, c.role])).toEqual([['primary', 'primary'], ['replica-1', 'replica'], ['replica-2', 'replica']]);
    for (const card of cards) {
      const body = await waitFor(`the page's response of ${card.at}`, () => pageResponses.get(card.at), 5000, 20);
      const n = body.databases.default!.nodes[card.node];
      expect({ size: card.size, idle: card.idle, inUse: card.inUse, waiting: card.waiting, min: card.min, max: card.max, acquireP95: card.acquireP95, routedReads: card.routedReads, routedWrites: card.routedWrites, acquired: card.acquired })
        .toEqual({ size: n.size, idle: n.idle, inUse: n.inUse, waiting: n.waiting, min: n.min, max: n.max, acquireP95: n.acquireMs.p95, routedReads: n.counters.routedReads, routedWrites: n.counters.routedWrites, acquired: n.counters.acquired });
      expect([card.shownInUse, card.shownIdle, card.shownWaiting]).toEqual([String(n.inUse), String(n.idle), String(n.waiting)]);
      expect([card.preparedHits, card.preparedMisses, card.preparedEvictions, card.preparedInvalidations])
        .toEqual([n.counters.preparedHits, n.counters.preparedMisses, n.counters.preparedEvictions, n.counters.preparedInvalidations]);
      expect(card.connectionsPoints).toBe(card.samples);
      expect(card.acquirePoints).toBe(card.samples);
      // The load sizing line shows the suggested max and advice of the same response.
      expect([card.suggestedMax, card.sizingAdvice]).toEqual([n.sizing.suggestedMax === null ? '' : String(n.sizing.suggestedMax), n.sizing.advice]);
      expect(card.shownSizing).toContain(`advice ${n.sizing.advice}`);
      if (n.sizing.suggestedMax !== null) expect(card.shownSizing).toContain(`suggested max ${n.sizing.suggestedMax}`);
    }

    // ... and those are the application's live numbers: same nodes and sizing, counters a moment later are not lower.
    const direct = (await (await fetch(`${baseUrl}/metrics/db-pool`)).json()) as { at: number; databases: Record<string, { nodes: Record<string, any> }> };
    for (const card of cards) {
      const n = direct.databases.default!.nodes[card.node];
      expect(direct.at).toBeGreaterThanOrEqual(card.at);
      expect([n.min, n.max, n.role]).toEqual([card.min, card.max, card.role]);
      expect(n.counters.acquired).toBeGreaterThanOrEqual(card.acquired);
      expect(n.size).toBeLessThanOrEqual(n.max);
    }

    // Live: the page keeps polling and the replicas' read counters move under load.
    const first = cards;
    await waitFor('five more polls', async () => Number(await page.getAttribute('body', 'data-polls')) >= 10, 30_000, 200);
    const later = await readCards(page);
    for (const r of ['replica-1', 'replica-2']) {
      const before = first.find((c) => c.node === r)!;
      const after = later.find((c) => c.node === r)!;
      expect(after.at).toBeGreaterThan(before.at);
      expect(after.routedReads).toBeGreaterThan(before.routedReads);
      expect(after.samples).toBeGreaterThan(before.samples);
    }
    expect(later.find((c) => c.node === 'primary')!.routedWrites).toBeGreaterThan(first.find((c) => c.node === 'primary')!.routedWrites);

    // The charts are drawn: the in-use line colour is on every connections canvas.
    const inkPixels = await page.$$eval('canvas[data-chart="connections"]', (canvases) =>
      canvases.map((c) => {
        const canvas = c as unknown as { width: number; height: number; getContext(kind: '2d'): { getImageData(x: number, y: number, w: number, h: number): { data: ArrayLike<number> } } };
        const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        let hits = 0;
        for (let i = 0; i < data.length; i += 4) {
          if (Math.abs(data[i]! - 37) < 12 && Math.abs(data[i + 1]! - 99) < 12 && Math.abs(data[i + 2]! - 235) < 12) hits++;
        }
        return hits;
      }),
    );
    expect(inkPixels).toHaveLength(3);
    for (const hits of inkPixels) expect(hits).toBeGreaterThan(50);

    // Routing split: reads of the last minute are shared by the replicas.
    const split = await page.$$eval('[data-routing-split="default"] .bar span', (spans) =>
      spans.map((s) => ({ node: s.getAttribute('data-node'), reads: Number(s.getAttribute('data-reads')), share: Number(s.getAttribute('data-share')) })),
    );
    const replicaShare = split.filter((s) => s.node !== 'primary').reduce((a, s) => a + s.share, 0);
    expect(split.find((s) => s.node === 'replica-1')!.reads).toBeGreaterThan(0);
    expect(split.find((s) => s.node === 'replica-2')!.reads).toBeGreaterThan(0);
    expect(replicaShare).toBeGreaterThan(0.9);

    await waitFor('forty seconds of history for the screenshot', async () => Number(await page.getAttribute('body', 'data-polls')) >= 40, 60_000, 250);
    mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    expect(statSync(SCREENSHOT).size).toBeGreaterThan(20_000);

    expect(pageErrors).toEqual([]);
    expect(external).toEqual([]);
    stopLoad = true;
    const stats = await load;
    expect(stats.errors).toEqual([]);
    expect(stats.reads).toBeGreaterThan(50);
    expect(stats.writes).toBeGreaterThan(10);
  }, 180_000);
});
