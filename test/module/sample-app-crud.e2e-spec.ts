import { randomUUID } from 'node:crypto';
import type { INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import request from 'supertest';
import { AppModule } from '../../sample-app/src/app.module.js';
import { adminQuery, clusterConfig, type PgNodeName } from '../support/cluster.js';
import { CapturingLogger } from '../support/logger.js';
import { waitForNoSessions } from '../support/sessions.js';
import { waitFor } from '../support/wait.js';
import { deleteUsers, startSampleApp } from '../support/sample-app.js';

// The sample app's own AppModule (what `npm run demo` serves) on the real primary + 2 replicas:
// the CRUD round trip over HTTP, which server answered each request (its `servedBy` against
// pg_is_in_recovery() and the cluster's ports), read-your-writes through the consistency token
// (with replay paused on the replicas, so the primary must answer), 400/404/409 handling, the
// transaction of each write, /health and /metrics wiring, and no session left after close.

const APP = 'e2e-sample-app';
const PASSWORD = clusterConfig.password;
const TOKEN_HEADER = 'x-pg-consistency-token';
const REPLICAS: readonly PgNodeName[] = ['replica1', 'replica2'];
const replicaPorts = REPLICAS.map((node) => clusterConfig.ports[node]);
const primaryPort = clusterConfig.ports.primary;

interface User {
  id: number;
  name: string;
  email: string;
  createdAt: string;
  updatedAt: string;
}
interface Served<T> {
  data: T;
  servedBy: { port: number; replica: boolean };
}

const logger = new CapturingLogger();

/** True once every replica has replayed the WAL position of a consistency token. */
async function replicasReplayed(token: string): Promise<boolean> {
  for (const node of REPLICAS) {
    const rows = await adminQuery<{ done: boolean }>(node, 'SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS done', [token]);
    if (rows[0]!.done !== true) return false;
  }
  return true;
}

async function setReplay(action: 'pause' | 'resume'): Promise<void> {
  for (const node of REPLICAS) await adminQuery(node, `SELECT pg_wal_replay_${action}()`);
}

function expectReplica(servedBy: Served<unknown>['servedBy']): void {
  expect(servedBy.replica).toBe(true);
  expect(replicaPorts).toContain(servedBy.port);
}

function expectPrimary(servedBy: Served<unknown>['servedBy']): void {
  expect(servedBy).toEqual({ port: primaryPort, replica: false });
}

describe('sample app: CRUD on users (real cluster)', () => {
  let app: INestApplication;
  const savedEnv = { ...process.env };
  const texts: string[] = [];
  const created: number[] = [];
  const email = (label: string) => `${label}-${randomUUID()}@example.com`;

  function http() {
    const server = app.getHttpServer();
    const record = <R extends { text: string }>(res: R): R => {
      texts.push(res.text);
      return res;
    };
    return {
      get: (path: string, token?: string) => {
        const req = request(server).get(path);
        return (token ? req.set(TOKEN_HEADER, token) : req).then(record);
      },
      post: (path: string, body: unknown) => request(server).post(path).send(body as object).then(record),
      patch: (path: string, body: unknown) => request(server).patch(path).send(body as object).then(record),
      delete: (path: string) => request(server).delete(path).then(record),
    };
  }

  beforeAll(async () => {
    app = await startSampleApp(APP, logger);
  }, 30_000);

  afterAll(async () => {
    await setReplay('resume').catch(() => undefined);
    await deleteUsers(created);
    await app?.close();
    process.env = savedEnv;
    await waitForNoSessions(APP, { timeoutMs: 10_000, everyMs: 50 });
    for (const text of [...texts, logger.text]) expect(text).not.toContain(PASSWORD);
  }, 60_000);

  it('migrated the tables on the primary at start, idempotently', async () => {
    const tables = await adminQuery<{ name: string }>('primary', "SELECT tablename AS name FROM pg_tables WHERE tablename IN ('users', 'user_events') ORDER BY 1");
    expect(tables.map((t) => t.name)).toEqual(['user_events', 'users']);
    // A second start runs the same migration again without an error.
    const second = await Test.createTestingModule({ imports: [AppModule] }).compile();
    const again = second.createNestApplication({ logger });
    await expect(again.init()).resolves.toBe(again);
    await again.close();
  }, 30_000);

  it('creates, reads (on replicas), updates and deletes a user; every write is one transaction on the primary', async () => {
    const api = http();
    const address = email('ada');

    const post = await api.post('/users', { name: '  Ada Lovelace ', email: address.toUpperCase() });
    expect(post.status).toBe(201);
    const user = (post.body as Served<User>).data;
    created.push(user.id);
    expect(user).toMatchObject({ id: expect.any(Number), name: 'Ada Lovelace', email: address });
    expectPrimary((post.body as Served<User>).servedBy);
    const token = post.headers[TOKEN_HEADER] as string;
    expect(token).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);

    // The user row and its 'created' event were written by one transaction (same xmin).
    const [row] = await adminQuery<{ name: string; xmin: string }>('primary', 'SELECT name, xmin::text FROM users WHERE id = $1', [user.id]);
    const events = await adminQuery<{ kind: string; xmin: string }>('primary', 'SELECT kind, xmin::text FROM user_events WHERE user_id = $1 ORDER BY id', [user.id]);
    expect(row!.name).toBe('Ada Lovelace');
    expect(events).toEqual([{ kind: 'created', xmin: row!.xmin }]);

    // With the token, the read sees the write wherever it runs.
    const fresh = await api.get(`/users/${user.id}`, token);
    expect(fresh.status).toBe(200);
    expect((fresh.body as Served<User>).data).toEqual(user);
    const freshBy = (fresh.body as Served<User>).servedBy;
    if (freshBy.replica) expectReplica(freshBy);
    else expectPrimary(freshBy);

    // Once both replicas replayed the write, plain GETs are served by the replicas, in turn.
    await waitFor('both replicas replayed the insert', () => replicasReplayed(token), 15_000);
    const ports = new Set<number>();
    for (let i = 0; i < 4; i++) {
      const res = await api.get(`/users/${user.id}`);
      expect(res.status).toBe(200);
      expect((res.body as Served<User>).data).toEqual(user);
      expectReplica((res.body as Served<User>).servedBy);
      ports.add((res.body as Served<User>).servedBy.port);
    }
    expect([...ports].sort()).toEqual([...replicaPorts].sort());
    const list = await api.get('/users?limit=100');
    expect(list.status).toBe(200);
    expectReplica((list.body as Served<User[]>).servedBy);
    const [{ n }] = (await adminQuery<{ n: string }>('primary', 'SELECT count(*) AS n FROM users WHERE id <= $1', [user.id])) as [{ n: string }];
    if (Number(n) <= 100) expect((list.body as Served<User[]>).data).toContainEqual(user);

    const patch = await api.patch(`/users/${user.id}`, { name: 'Ada King' });
    expect(patch.status).toBe(200);
    const updated = patch.body as Served<User>;
    expectPrimary(updated.servedBy);
    expect(updated.data).toMatchObject({ id: user.id, name: 'Ada King', email: address, createdAt: user.createdAt });
    expect(Date.parse(updated.data.updatedAt)).toBeGreaterThanOrEqual(Date.parse(user.updatedAt));
    const [after] = await adminQuery<{ xmin: string }>('primary', 'SELECT xmin::text FROM users WHERE id = $1', [user.id]);
    const updateEvents = await adminQuery<{ xmin: string }>('primary', "SELECT xmin::text FROM user_events WHERE user_id = $1 AND kind = 'updated'", [user.id]);
    expect(updateEvents).toEqual([{ xmin: after!.xmin }]);
    const afterPatch = await api.get(`/users/${user.id}`, patch.headers[TOKEN_HEADER] as string);
    expect((afterPatch.body as Served<User>).data.name).toBe('Ada King');

    const del = await api.delete(`/users/${user.id}`);
    expect(del.status).toBe(200);
    expect((del.body as Served<User>).data).toMatchObject({ id: user.id, name: 'Ada King' });
    expectPrimary((del.body as Served<User>).servedBy);
    expect(await adminQuery('primary', 'SELECT 1 FROM users WHERE id = $1', [user.id])).toHaveLength(0);
    const kinds = await adminQuery<{ kind: string }>('primary', 'SELECT kind FROM user_events WHERE user_id = $1 ORDER BY id', [user.id]);
    expect(kinds.map((k) => k.kind)).toEqual(['created', 'updated', 'deleted']);
    const gone = await api.get(`/users/${user.id}`, del.headers[TOKEN_HEADER] as string);
    expect(gone.status).toBe(404);
    expect(gone.body.message).toBe(`Cannot find user ${user.id} because no user has this id.`);
  });

  it('reads its own writes from the primary while the replicas have not replayed them', async () => {
    const api = http();
    await setReplay('pause');
    try {
      const post = await api.post('/users', { name: 'Grace Hopper', email: email('grace') });
      expect(post.status).toBe(201);
      const user = (post.body as Served<User>).data;
      created.push(user.id);
      const token = post.headers[TOKEN_HEADER] as string;

      // No replica has the row: with the token the primary answers ...
      const own = await api.get(`/users/${user.id}`, token);
      expect(own.status).toBe(200);
      expect((own.body as Served<User>).data).toEqual(user);
      expectPrimary((own.body as Served<User>).servedBy);
      // ... without it a replica answers, and does not know the user yet.
      const stale = await api.get(`/users/${user.id}`);
      expect(stale.status).toBe(404);
      const staleList = await api.get('/users?limit=100');
      expectReplica((staleList.body as Served<User[]>).servedBy);
      expect((staleList.body as Served<User[]>).data.map((u) => u.id)).not.toContain(user.id);
    } finally {
      await setReplay('resume');
    }
  });

  it('answers 400 for bad input, 404 for a missing user and 409 for a taken e-mail, changing nothing', async () => {
    const api = http();
    const cases: Array<[Promise<{ status: number; body: { message: string } }>, number, string]> = [
      [api.get('/users/abc'), 400, 'Invalid id: expected an integer from 1 to 2147483647, got "abc".'],
      [api.get('/users/0'), 400, 'Invalid id: expected an integer from 1 to 2147483647, got "0".'],
      [api.get('/users?limit=0'), 400, 'Invalid limit: expected an integer from 1 to 100, got "0".'],
      [api.get('/users?offset=-1'), 400, 'Invalid offset: expected an integer from 0 to 1000000, got "-1".'],
      [api.post('/users', { name: 'No Mail' }), 400, 'Invalid email: expected an e-mail address such as "ada@example.com", got nothing.'],
      [api.post('/users', { name: '', email: email('x') }), 400, 'Invalid name: expected a string of 1 to 200 characters, got "".'],
      [api.post('/users', { name: 'X', email: email('x'), admin: true }), 400, 'Invalid body: expected only the fields name and email, got {"admin":true}.'],
      [api.patch('/users/1', {}), 400, 'Invalid body: expected at least one of name and email, got {}.'],
      [api.get('/users/2147483647'), 404, 'Cannot find user 2147483647 because no user has this id.'],
      [api.patch('/users/2147483647', { name: 'Nobody' }), 404, 'Cannot find user 2147483647 because no user has this id.'],
      [api.delete('/users/2147483647'), 404, 'Cannot find user 2147483647 because no user has this id.'],
    ];
    for (const [pending, status, message] of cases) {
      const res = await pending;
      expect({ status: res.status, message: res.body.message }).toEqual({ status, message });
    }

    const taken = email('taken');
    const first = await api.post('/users', { name: 'First', email: taken });
    expect(first.status).toBe(201);
    const firstId = (first.body as Served<User>).data.id;
    created.push(firstId);
    const second = await api.post('/users', { name: 'Second', email: taken });
    expect(second.status).toBe(409);
    expect(second.body.message).toBe(`Cannot save the user because the e-mail "${taken}" is already taken. Please make sure that every user has a different e-mail.`);
    const other = await api.post('/users', { name: 'Other', email: email('other') });
    const otherId = (other.body as Served<User>).data.id;
    created.push(otherId);
    const clash = await api.patch(`/users/${otherId}`, { email: taken });
    expect(clash.status).toBe(409);
    const [row] = await adminQuery<{ name: string }>('primary', 'SELECT name FROM users WHERE email = $1', [taken]);
    expect(row!.name).toBe('First');
    const otherEvents = await adminQuery<{ kind: string }>('primary', 'SELECT kind FROM user_events WHERE user_id = $1', [otherId]);
    expect(otherEvents.map((e) => e.kind)).toEqual(['created']);
  });

  it('serves /health with every node and the /metrics endpoints the module registers', async () => {
    const api = http();
    const health = await api.get('/health');
    expect(health.status).toBe(200);
    expect(health.body.status).toBe('ok');
    const db = health.body.details.database;
    expect(db).toMatchObject({ status: 'up', degraded: false, replicas: { total: 2, healthy: 2 } });
    expect(Object.keys(db.nodes)).toEqual(['primary', 'replica-1', 'replica-2']);
    expect(db.nodes.primary).toMatchObject({ status: 'up', address: `${clusterConfig.host}:${primaryPort}` });

    const prometheus = await api.get('/metrics');
    expect(prometheus.status).toBe(200);
    expect(prometheus.text).toMatch(/^db_pool_max\{[^}]*node="replica-1"[^}]*\} \d+$/m);
    const json = await api.get('/metrics/db-pool');
    expect(json.status).toBe(200);
    expect(JSON.stringify(json.body)).toContain('replica-2');
  });
});
