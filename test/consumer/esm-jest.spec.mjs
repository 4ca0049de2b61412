// A NestJS 12 application's test under Jest in native ESM mode (node --experimental-vm-modules,
// no transform), the way ESM-only NestJS 12 apps run Jest: it imports the packed package (the
// ES module build through the `import` condition) and queries the real cluster.
// scripts/check-consumers.sh runs it with the repository's Jest.
import 'reflect-metadata';
import { afterAll, beforeAll, expect, test } from '@jest/globals';
import { Test } from '@nestjs/testing';
import { DatabaseService, PoolModule } from 'nestjs-pg-pools';

const env = (key) => {
  const value = process.env[key];
  if (!value) throw new Error(`Cannot run the Jest ESM consumer because ${key} is not set. Please make sure that scripts/check-consumers.sh runs it.`);
  return value;
};
const server = (port) => ({ host: env('PG_HOST'), port: Number(env(port)), user: env('PG_USER'), password: env('PG_PASSWORD'), database: env('PG_DATABASE') });

let moduleRef;
beforeAll(async () => {
  moduleRef = await Test.createTestingModule({
    imports: [PoolModule.forRoot({ primary: server('PG_PRIMARY_PORT'), replicas: [server('PG_REPLICA1_PORT')], preset: 'test', min: 1, applicationName: 'consumer-jest-esm', sizingAdvisor: false })],
  }).compile();
  await moduleRef.init();
});
afterAll(() => moduleRef?.close());

test('runs as an ES module and reads from the replica through the DatabaseService it injects', async () => {
  expect(typeof require).toBe('undefined');
  const db = moduleRef.get(DatabaseService);
  expect(db).toBeInstanceOf(DatabaseService);
  const { rows } = await db.replica.query('SELECT inet_server_port() AS port, pg_is_in_recovery() AS in_recovery');
  expect(rows[0]).toEqual({ port: Number(env('PG_REPLICA1_PORT')), in_recovery: true });
});
