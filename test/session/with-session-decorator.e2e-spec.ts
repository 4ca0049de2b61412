import { Inject, Injectable, Module, type INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import {
  DatabaseService,
  PoolConfigurationError,
  PoolModule,
  ReadOnly,
  SessionContextInTransactionError,
  Transactional,
  WithSession,
  type SessionContext,
} from 'nestjs-pg-pools';
import { defer, map, type Observable } from 'rxjs';
import { adminQuery, clusterConfig, nodeOptions, replicaOptions } from '../support/cluster.js';
import { CapturingLogger } from '../support/logger.js';
import { waitForNoSessions } from '../support/sessions.js';
import { createTenantRows } from '../support/tenant-rows.js';

// @WithSession() on a provider method called from code no HTTP request reaches (a job started
// with app.get(Service).run()): row-level security per tenant applied to every statement of the
// call, on the primary, on a replica under @ReadOnly(), inside @Transactional(), for an
// Observable subscribed later; nothing of it reaches the next borrower of the same connection
// (one connection per node); the order and validation errors a user can hit.

const TABLE = 'session_deco_rows';
const ROLE = 'session_deco_tenant';
const APP = 'e2e-session-deco';

interface Seen {
  tenant: string;
  role: string;
  setting: string;
  port: number;
  recovery: boolean;
  pid: number;
}

const ROWS_SQL =
  `SELECT tenant, current_user::text AS role, current_setting('app.tenant_id') AS setting, inet_server_port() AS port, ` +
  `pg_is_in_recovery() AS recovery, pg_backend_pid() AS pid FROM ${TABLE} ORDER BY id`;
const BARE_SQL =
  "SELECT current_user::text AS role, coalesce(current_setting('app.tenant_id', true), '') AS setting, inet_server_port() AS port, " +
  'pg_is_in_recovery() AS recovery, pg_backend_pid() AS pid';

const tenantContext = (tenant: string): SessionContext => ({ role: ROLE, settings: { 'app.tenant_id': tenant } });

@Injectable()
class TenantJobs {
  constructor(@Inject(DatabaseService) readonly db: DatabaseService) {}

  /** A static context: always tenant-a, with a secret setting the module keeps out of logs. */
  @WithSession({ role: ROLE, settings: { 'app.tenant_id': 'tenant-a', 'app.api_key': 'deco-key-kept-out-of-logs' } })
  async run(): Promise<Seen[]> {
    return (await this.db.query<Seen>(ROWS_SQL)).rows;
  }

  /** The context from the method's arguments; reads on a replica. */
  @WithSession((tenant: string) => tenantContext(tenant))
  @ReadOnly()
  async readFor(_tenant: string): Promise<Seen[]> {
    return (await this.db.query<Seen>(ROWS_SQL)).rows;
  }

  /** The context applied right after BEGIN; a @ReadOnly() read inside joins the transaction. */
  @WithSession((tenant: string) => tenantContext(tenant))
  @Transactional()
  async addFor(tenant: string, note: string): Promise<{ inserted: Seen; seen: Seen[]; inside: Seen[]; txids: string[] }> {
    const inserted = await this.db.query<Seen & { txid: string }>(
      `INSERT INTO ${TABLE} (tenant, note) VALUES (current_setting('app.tenant_id'), $1) ` +
        `RETURNING tenant, current_user::text AS role, current_setting('app.tenant_id') AS setting, inet_server_port() AS port, pg_is_in_recovery() AS recovery, pg_backend_pid() AS pid, txid_current()::text AS txid`,
      [note],
    );
    const seen = await this.db.query<Seen & { txid: string }>(ROWS_SQL.replace(' FROM', ', txid_current()::text AS txid FROM'));
    const inside = await this.readInside();
    return { inserted: inserted.rows[0]!, seen: seen.rows, inside, txids: [inserted.rows[0]!.txid, ...seen.rows.map((r) => r.txid)] };
  }

  @ReadOnly()
  async readInside(): Promise<Seen[]> {
    return (await this.db.query<Seen>(ROWS_SQL)).rows;
  }

  /** `this` is the instance: the tenant a job was configured with; `undefined` means no context. */
  tenant: string | undefined;

  @WithSession(function (this: TenantJobs) {
    return this.tenant === undefined ? undefined : tenantContext(this.tenant);
  })
  async forConfiguredTenant(): Promise<Seen[]> {
    return (await this.db.query<Seen>(ROWS_SQL)).rows;
  }

  /** An Observable runs when subscribed: still under the context, still on a replica. */
  @WithSession((tenant: string) => tenantContext(tenant))
  @ReadOnly()
  rows$(_tenant: string): Observable<Seen[]> {
    return defer(() => this.db.query<Seen>(ROWS_SQL)).pipe(map((r) => r.rows));
  }

  /** A bad context from the arguments (a setting value that is not a string, number or boolean). */
  @WithSession((tenant?: string) => ({ role: ROLE, settings: { 'app.tenant_id': tenant as string } }))
  async strict(_tenant?: string): Promise<Seen[]> {
    return (await this.db.query<Seen>(ROWS_SQL)).rows;
  }

  /** A @WithSession() method called inside an open transaction of the same database. */
  @Transactional()
  async runInsideTransaction(): Promise<Seen[]> {
    return this.run();
  }

  bare(): Promise<Seen> {
    return this.db.query<Seen>(BARE_SQL).then((r) => r.rows[0]!);
  }

  bareReplica(): Promise<Seen> {
    return this.db.replica.query<Seen>(BARE_SQL).then((r) => r.rows[0]!);
  }
}

async function start(logger: CapturingLogger): Promise<INestApplication> {
  @Module({
    imports: [
      PoolModule.forRoot({
        preset: 'test',
        applicationName: APP,
        primary: nodeOptions('primary'),
        replicas: replicaOptions(),
        max: 1,
        sizingAdvisor: false,
        metrics: { enabled: false },
        alerts: { enabled: false },
        session: { secret: ['app.api_key'] },
      }),
    ],
    providers: [TenantJobs],
  })
  class JobsModule {}
  const moduleRef = await Test.createTestingModule({ imports: [JobsModule] }).compile();
  const app = moduleRef.createNestApplication({ logger });
  await app.init();
  return app;
}

const replicaPorts = [clusterConfig.replica1.port, clusterConfig.replica2.port];

describe('@WithSession(): the session context of a provider method no request reaches', () => {
  let app: INestApplication;
  let jobs: TenantJobs;
  const logger = new CapturingLogger();

  beforeAll(async () => {
    await createTenantRows(TABLE, ROLE, 3);
    app = await start(logger);
    jobs = app.get(TenantJobs);
  }, 30_000);

  afterAll(async () => {
    await app?.close();
    await waitForNoSessions(APP, { timeoutMs: 5000, everyMs: 50 });
    await adminQuery('primary', `DROP TABLE IF EXISTS ${TABLE}`);
  });

  it('a static context applies on the primary; the next borrower of the same connection sees no setting and the login role', async () => {
    const rows = await jobs.run();
    expect(rows).toHaveLength(3);
    for (const row of rows) expect(row).toMatchObject({ tenant: 'tenant-a', role: ROLE, setting: 'tenant-a', port: clusterConfig.primary.port, recovery: false });
    const after = await jobs.bare();
    expect(after).toMatchObject({ role: 'app', setting: '', port: clusterConfig.primary.port, pid: rows[0]!.pid });
    // The secret setting is shown as [secret]: the module's `session.secret` applies to the decorator's context.
    expect(logger.messages('debug')).toContain(`Session context on "default/primary": app.tenant_id = "tenant-a", app.api_key = [secret], role = "${ROLE}"`);
    expect(logger.text).not.toContain('deco-key-kept-out-of-logs');
  });

  it('a context from the arguments applies under @ReadOnly() on a replica, and leaves nothing on it', async () => {
    const seenPorts = new Set<number>();
    for (const tenant of ['tenant-a', 'tenant-b', 'tenant-b', 'tenant-a']) {
      const rows = await jobs.readFor(tenant);
      expect(rows).toHaveLength(3);
      for (const row of rows) {
        expect(row).toMatchObject({ tenant, role: ROLE, setting: tenant, recovery: true });
        expect(replicaPorts).toContain(row.port);
        seenPorts.add(row.port);
      }
    }
    expect(seenPorts.size).toBe(2);
    for (let i = 0; i < 4; i++) {
      const after = await jobs.bareReplica();
      expect(after).toMatchObject({ role: 'app', setting: '', recovery: true });
    }
  });

  it('above @Transactional(): applied right after BEGIN, every statement of the transaction (and a @ReadOnly() read in it) has it', async () => {
    const { inserted, seen, inside, txids } = await jobs.addFor('tenant-b', 'from a job');
    expect(inserted).toMatchObject({ tenant: 'tenant-b', role: ROLE, setting: 'tenant-b', port: clusterConfig.primary.port, recovery: false });
    expect(new Set(txids).size).toBe(1);
    expect(seen.map((r) => r.tenant)).toEqual(['tenant-b', 'tenant-b', 'tenant-b', 'tenant-b']);
    expect(inside).toHaveLength(4);
    for (const row of inside) expect(row).toMatchObject({ tenant: 'tenant-b', role: ROLE, port: clusterConfig.primary.port, pid: inserted.pid });
    // Committed: the row is there for tenant-b only, and the connection is clean again.
    expect((await jobs.readFor('tenant-a')).some((r) => r.tenant !== 'tenant-a')).toBe(false);
    expect(await jobs.bare()).toMatchObject({ role: 'app', setting: '', pid: inserted.pid });
    const rows = await adminQuery<{ tenant: string }>('primary', `SELECT tenant FROM ${TABLE} WHERE note = 'from a job'`);
    expect(rows).toEqual([{ tenant: 'tenant-b' }]);
  });

  it('a context function gets `this`; undefined means no context: the RLS policy shows no row', async () => {
    jobs.tenant = 'tenant-b';
    expect((await jobs.forConfiguredTenant()).map((r) => r.tenant)).toEqual(['tenant-b', 'tenant-b', 'tenant-b', 'tenant-b']);
    jobs.tenant = undefined;
    expect(await jobs.forConfiguredTenant()).toEqual([]);
  });

  it('an Observable subscribed later still runs under the context, on a replica', async () => {
    const rows$ = jobs.rows$('tenant-a');
    await new Promise((resolve) => setTimeout(resolve, 20));
    const rows = await new Promise<Seen[]>((resolve, reject) => rows$.subscribe({ next: resolve, error: reject }));
    expect(rows.length).toBeGreaterThan(0);
    for (const row of rows) {
      expect(row).toMatchObject({ tenant: 'tenant-a', role: ROLE, setting: 'tenant-a', recovery: true });
      expect(replicaPorts).toContain(row.port);
    }
  });

  it('a bad context from the arguments rejects that call with PoolConfigurationError naming the field; a good one then works on the same connection', async () => {
    const before = await jobs.bare();
    const err = await jobs.strict(undefined).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(PoolConfigurationError);
    expect((err as Error).message).toBe(
      'Invalid @WithSession() context.settings["app.tenant_id"]: expected a string, number or boolean, got undefined (undefined).',
    );
    expect((await jobs.strict('tenant-a')).map((r) => r.tenant)).toEqual(['tenant-a', 'tenant-a', 'tenant-a']);
    expect(await jobs.bare()).toMatchObject({ role: 'app', setting: '', pid: before.pid });
  });

  it('called inside an open transaction of the same database: SessionContextInTransactionError naming the method, the connection left clean', async () => {
    const err = await jobs.runInsideTransaction().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(SessionContextInTransactionError);
    expect((err as Error).message).toContain('Cannot set a session context for "default" inside an open transaction');
    expect((err as Error).message).toContain('the @WithSession() method TenantJobs.run is called outside db.transaction() and @Transactional() methods');
    expect(await jobs.bare()).toMatchObject({ role: 'app', setting: '' });
  });

  it('a bad static context, and @Transactional() written above @WithSession(), fail when the class is defined', () => {
    expect(() => WithSession({ role: 'x"; DROP TABLE users; --' })).toThrow(PoolConfigurationError);
    expect(() => WithSession({ role: 'x"; DROP TABLE users; --' })).toThrow(/^Invalid @WithSession\(\) context\.role: expected a role name/);
    expect(() => WithSession({ settings: { role: 'admin' } })).toThrow(/@WithSession\(\) context\.settings/);
    expect(() => {
      class WrongOrder {
        @Transactional()
        @WithSession(tenantContext('tenant-a'))
        async run(): Promise<void> {}
      }
      return WrongOrder;
    }).toThrow(
      'Cannot apply @Transactional() above @WithSession() on WrongOrder.run because the session context is applied when the transaction begins, ' +
        'so it must be set before the transaction opens. Please make sure that @WithSession() is written above @Transactional() (decorators apply bottom-up).',
    );
  });
});
