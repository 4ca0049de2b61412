import { randomUUID } from 'node:crypto';
import type { INestApplication } from '@nestjs/common';
import request from 'supertest';
import { adminQuery, clusterConfig, type PgNodeName } from '../support/cluster.js';
import { waitForNoSessions } from '../support/sessions.js';
import { waitForReplay } from '../support/routing.support.js';
import { deleteUsers, startSampleApp } from '../support/sample-app.js';

// The sample app's Kysely, Drizzle and Prisma Client modules (plain provider factories over
// DatabaseService, on db.routedPool) on the real primary + 2 replicas: a POST runs the builder's own transaction on
// the primary (user + event, one xmin; Prisma's is a prisma.$transaction) and hands out the consistency token; a GET under
// @ReadOnly() answers from a replica, with the token too; 404 and 409 as on /users.

const APP = 'e2e-sample-app-qb';
const TOKEN_HEADER = 'x-pg-consistency-token';
const REPLICAS: readonly PgNodeName[] = ['replica1', 'replica2'];
const replicaPorts = REPLICAS.map((node) => clusterConfig.ports[node]);

interface Served {
  data: { id: number; name: string; email: string };
  servedBy: { port: number; replica: boolean };
}

describe.each(['kysely', 'drizzle', 'prisma'])('sample app: /qb/%s/users (real cluster)', (builder) => {
  let app: INestApplication;
  const savedEnv = { ...process.env };
  const created: number[] = [];
  const http = () => request(app.getHttpServer());

  beforeAll(async () => {
    app = await startSampleApp(APP);
  }, 30_000);

  afterAll(async () => {
    await deleteUsers(created);
    await app?.close();
    process.env = savedEnv;
    await waitForNoSessions(APP, { timeoutMs: 10_000, everyMs: 50 });
  }, 60_000);

  it('POST writes the user and its event in one transaction on the primary; GET reads it on a replica', async () => {
    const email = `${builder}-${randomUUID()}@example.com`;
    const post = await http().post(`/qb/${builder}/users`).send({ name: 'Grace Hopper', email }).expect(201);
    const body = post.body as Served;
    created.push(body.data.id);
    expect(body.data).toMatchObject({ name: 'Grace Hopper', email });
    expect(body.servedBy).toEqual({ port: clusterConfig.ports.primary, replica: false });
    const token = post.headers[TOKEN_HEADER] as string;
    expect(token).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);

    const [user] = await adminQuery<{ xmin: string }>('primary', 'SELECT xmin::text FROM users WHERE id = $1', [body.data.id]);
    const events = await adminQuery<{ kind: string; xmin: string }>('primary', 'SELECT kind, xmin::text FROM user_events WHERE user_id = $1', [body.data.id]);
    expect(events).toEqual([{ kind: 'created', xmin: user!.xmin }]);

    const withToken = await http().get(`/qb/${builder}/users/${body.data.id}`).set(TOKEN_HEADER, token).expect(200);
    expect((withToken.body as Served).data).toMatchObject({ id: body.data.id, email });

    await Promise.all(REPLICAS.map((r) => waitForReplay(r)));
    for (let i = 0; i < 4; i++) {
      const get = await http().get(`/qb/${builder}/users/${body.data.id}`).expect(200);
      expect((get.body as Served).servedBy.replica).toBe(true);
      expect(replicaPorts).toContain((get.body as Served).servedBy.port);
    }
  });

  it('answers 404 for a missing user, 400 for a bad id, 409 for a taken e-mail (and writes nothing)', async () => {
    await http().get(`/qb/${builder}/users/2147483000`).expect(404);
    await http().get(`/qb/${builder}/users/abc`).expect(400);
    const email = `${builder}-taken-${randomUUID()}@example.com`;
    const first = await http().post(`/qb/${builder}/users`).send({ name: 'First', email }).expect(201);
    created.push((first.body as Served).data.id);
    const conflict = await http().post(`/qb/${builder}/users`).send({ name: 'Second', email }).expect(409);
    expect(conflict.body.message).toContain('is already taken');
    const rows = await adminQuery<{ n: number }>('primary', 'SELECT count(*)::int AS n FROM users WHERE email = $1', [email]);
    expect(rows[0]!.n).toBe(1);
  });
});
