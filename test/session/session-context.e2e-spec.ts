import { Controller, Get, Headers, Inject, Module, Post, type INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { Kysely, PostgresDialect, sql } from 'kysely';
import { DatabaseService, PoolConfigurationError, PoolModule, ReadOnly, Transactional, type PoolModuleRootOptions } from 'nestjs-pg-pools';
import type { PoolClient } from 'pg';
import { adminQuery, clusterConfig, nodeOptions, replicaOptions } from '../support/cluster.js';
import { CapturingLogger } from '../support/logger.js';
import { waitForNoSessions } from '../support/sessions.js';
import { createTenantRows } from '../support/tenant-rows.js';

// Row-level security per tenant through the pool: a table owned by the superuser with a policy on
// current_setting('app.tenant_id'), the app reaching it as a non-owner, each request's tenant
// applied with set_config(…, true) inside a transaction. Two tenants and requests with no tenant
// hammer it over HTTP (reads under @ReadOnly() on replicas, writes, transactions, Kysely through
// db.routedPool, withClient); every row each one sees is checked. The same through PgBouncer
// (transaction mode), where only transaction-local settings hold.

const TABLE = 'session_ctx_rows';
const ROLE = 'session_ctx_tenant';
const LOOPS = 64;
const ROUNDS = 6;
const KINDS = ['read', 'write', 'transaction', 'kysely', 'client'] as const;
type Kind = (typeof KINDS)[number];

interface Seen {
  tenant: string;
  role: string;
  port: number;
  recovery: boolean;
}

interface Answer {
  rows: Seen[];
}

const ROWS_SQL = `SELECT tenant, current_user::text AS role, inet_server_port() AS port, pg_is_in_recovery() AS recovery FROM ${TABLE}`;

interface Db {
  [TABLE]: { id: number; tenant: string; note: string };
}

@Controller('rows')
class RowsController {
  readonly #kysely: Kysely<Db>;

  constructor(@Inject(DatabaseService) private readonly db: DatabaseService) {
    this.#kysely = new Kysely<Db>({ dialect: new PostgresDialect({ pool: db.routedPool }) });
  }

  @Get('read')
  @ReadOnly()
  async read(): Promise<Answer> {
    return { rows: (await this.db.query<Seen>(ROWS_SQL)).rows };
  }

  @Post('write')
  async write(@Headers('x-tenant') tenant?: string): Promise<Answer> {
    const inserted = await this.db.query<Seen>(
      `INSERT INTO ${TABLE} (tenant, note) VALUES (current_setting('app.tenant_id', true), $1) RETURNING tenant, current_user::text AS role, inet_server_port() AS port, pg_is_in_recovery() AS recovery`,
      [`by ${tenant ?? 'nobody'}`],
    ).catch(() => ({ rows: [] as Seen[] }));
    return { rows: [...inserted.rows, ...(await this.db.query<Seen>(ROWS_SQL)).rows] };
  }

  @Post('transaction')
  @Transactional()
  async transaction(): Promise<Answer> {
    const rows = (await this.db.query<Seen>(ROWS_SQL)).rows;
    return { rows: [...rows, ...(await this.readOnlyInside())] };
  }

  @ReadOnly()
  async readOnlyInside(): Promise<Seen[]> {
    return (await this.db.query<Seen>(ROWS_SQL)).rows;
  }

  @Get('kysely')
  @ReadOnly()
  async kysely(): Promise<Answer> {
    const rows = await this.#kysely
      .selectFrom(TABLE)
      .select(['tenant', sql<string>`current_user::text`.as('role'), sql<number>`inet_server_port()`.as('port'), sql<boolean>`pg_is_in_recovery()`.as('recovery')])
      .execute();
    const written = await this.#kysely.transaction().execute(async (trx) => trx.selectFrom(TABLE).select(['tenant', sql<string>`current_user::text`.as('role'), sql<number>`inet_server_port()`.as('port'), sql<boolean>`pg_is_in_recovery()`.as('recovery')]).execute());
    return { rows: [...rows, ...written] };
  }

  @Get('client')
  async client(): Promise<Answer> {
    const rows = await this.db.withClient(async (c: PoolClient) => {
      const first = (await c.query<Seen>(ROWS_SQL)).rows;
      await c.query('BEGIN');
      const inTx = (await c.query<Seen>(ROWS_SQL)).rows;
      await c.query('COMMIT');
      return [...first, ...inTx];
    });
    return { rows };
  }
}

function sessionOptions(): PoolModuleRootOptions['session'] {
  return {
    fromRequest: (req: { headers: Record<string, string | undefined> }) => {
      const tenant = req.headers['x-tenant'];
      return tenant === undefined ? undefined : { role: ROLE, settings: { 'app.tenant_id': tenant, 'app.api_key': `key-of-${tenant}` } };
    },
    secret: ['app.api_key'],
  };
}

async function startHttp(options: PoolModuleRootOptions, logger?: CapturingLogger): Promise<{ app: INestApplication; url: string; db: DatabaseService }> {
  @Module({ imports: [PoolModule.forRoot({ sizingAdvisor: false, metrics: { enabled: false }, alerts: { enabled: false }, ...options })], controllers: [RowsController] })
  class AppModule {}
  const moduleRef = await Test.createTestingModule({ imports: [AppModule] }).compile();
  const app = moduleRef.createNestApplication({ logger: logger ?? false });
  await app.listen(0, '127.0.0.1');
  return { app, url: await app.getUrl(), db: app.get(DatabaseService) };
}

const ENDPOINT: Record<Kind, { method: 'GET' | 'POST'; path: string }> = {
  read: { method: 'GET', path: '/rows/read' },
  write: { method: 'POST', path: '/rows/write' },
  transaction: { method: 'POST', path: '/rows/transaction' },
  kysely: { method: 'GET', path: '/rows/kysely' },
  client: { method: 'GET', path: '/rows/client' },
};

/** 64 loops: tenant-a, tenant-b and no tenant, each through every endpoint kind; every row checked. */
async function hammer(url: string, expectReplicas: boolean): Promise<{ requests: number; rows: Record<string, number>; wrong: string[]; ports: Set<number> }> {
  const wrong: string[] = [];
  const rows: Record<string, number> = { 'tenant-a': 0, 'tenant-b': 0, none: 0 };
  const ports = new Set<number>();
  let requests = 0;
  const loop = async (i: number) => {
    const tenant = i % 3 === 0 ? undefined : i % 3 === 1 ? 'tenant-a' : 'tenant-b';
    for (let round = 0; round < ROUNDS; round++) {
      const kind = KINDS[(i + round) % KINDS.length]!;
      const { method, path } = ENDPOINT[kind];
      const res = await fetch(url + path, { method, headers: tenant === undefined ? {} : { 'x-tenant': tenant } });
      requests++;
      if (res.status !== 200 && res.status !== 201) {
        wrong.push(`${tenant ?? 'none'} ${kind}: HTTP ${res.status} ${await res.text()}`);
        continue;
      }
      const body = (await res.json()) as Answer;
      for (const row of body.rows) {
        rows[tenant ?? 'none']!++;
        ports.add(row.port);
        if (row.tenant !== tenant) wrong.push(`${tenant ?? 'none'} ${kind} saw a row of ${row.tenant}`);
        if (row.role !== ROLE) wrong.push(`${tenant ?? 'none'} ${kind} ran as ${row.role}`);
      }
    }
  };
  await Promise.all(Array.from({ length: LOOPS }, (_, i) => loop(i)));
  if (expectReplicas && ![...ports].some((p) => p === clusterConfig.replica1.port || p === clusterConfig.replica2.port)) wrong.push('no read reached a replica');
  return { requests, rows, wrong, ports };
}

describe('per-request session context: row-level security per tenant', () => {
  beforeAll(async () => {
    await createTenantRows(TABLE, ROLE, 5);
  }, 30_000);

  afterAll(async () => {
    await adminQuery('primary', `DROP TABLE IF EXISTS ${TABLE}`);
  });

  it('64 concurrent loops over HTTP (two tenants and no tenant) see only their own rows, on the primary and replicas', async () => {
    const app = 'e2e-session-ctx';
    const { app: nest } = await startHttp({ preset: 'test', applicationName: app, primary: nodeOptions('primary'), replicas: replicaOptions(), max: 8, session: sessionOptions() }).then(async (started) => {
      const result = await hammer(started.url, true);
      expect(result.wrong.slice(0, 10)).toEqual([]);
      expect(result.requests).toBe(LOOPS * ROUNDS);
      expect(result.rows['tenant-a']).toBeGreaterThan(0);
      expect(result.rows['tenant-b']).toBeGreaterThan(0);
      expect(result.rows.none).toBe(0);
      return started;
    });
    await nest.close();
    await waitForNoSessions(app, { timeoutMs: 5000, everyMs: 50 });
  }, 120_000);

  it('the same through PgBouncer in transaction mode', async () => {
    const app = 'e2e-session-ctx-bouncer';
    const started = await startHttp({ preset: 'test', applicationName: app, pgbouncer: true, primary: nodeOptions('pgbouncer'), max: 8, session: sessionOptions() });
    try {
      const result = await hammer(started.url, false);
      expect(result.wrong.slice(0, 10)).toEqual([]);
      expect(result.rows['tenant-a']).toBeGreaterThan(0);
      expect(result.rows['tenant-b']).toBeGreaterThan(0);
      expect(result.rows.none).toBe(0);
      expect([...result.ports]).toEqual([clusterConfig.primary.port]);
    } finally {
      await started.app.close();
    }
  }, 120_000);

  it('db.withSession() for code no request reaches; a bad role or setting name is one clear error; nothing outlives the transaction', async () => {
    const logger = new CapturingLogger();
    const started = await startHttp({ preset: 'test', applicationName: 'e2e-session-ctx-with', primary: nodeOptions('primary'), replicas: replicaOptions(), max: 1, session: { secret: ['app.api_key'] } }, logger);
    const { db } = started;
    try {
      const mine = await db.withSession({ role: ROLE, settings: { 'app.tenant_id': 'tenant-b', 'app.api_key': 'key-kept-out-of-logs' } }, () => db.query<Seen>(ROWS_SQL));
      expect(logger.messages('debug')).toContain(`Session context on "default/primary": app.tenant_id = "tenant-b", app.api_key = [secret], role = "${ROLE}"`);
      expect(logger.text).not.toContain('key-kept-out-of-logs');
      expect(mine.rows.length).toBeGreaterThan(0);
      expect(mine.rows.every((r) => r.tenant === 'tenant-b' && r.role === ROLE)).toBe(true);
      const onReplica = await db.withSession({ role: ROLE, settings: { 'app.tenant_id': 'tenant-a' } }, () => db.replica.query<Seen>(ROWS_SQL));
      expect(onReplica.rows.every((r) => r.tenant === 'tenant-a' && r.recovery)).toBe(true);
      expect((await db.query<Seen>(ROWS_SQL)).rows).toEqual([]);
      const after = await db.query<{ user: string; tenant: string | null }>("SELECT current_user::text AS user, current_setting('app.tenant_id', true) AS tenant");
      expect(after.rows[0]!.user).toBe('app');
      expect(after.rows[0]!.tenant ?? '').toBe('');
      expect(() => db.withSession({ role: 'x"; DROP TABLE users; --' }, () => undefined)).toThrow(PoolConfigurationError);
      expect(() => db.withSession({ settings: { 'bad name': 1 } }, () => undefined)).toThrow(/withSession\(context\)\.settings/);
    } finally {
      await started.app.close();
    }
  }, 60_000);
});
