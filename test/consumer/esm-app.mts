// An ECMAScript-module application that consumes the packed library the way a user installs it.
// scripts/check-consumers.sh compiles it with tsc (NodeNext) against the packed typings and runs it.
import 'reflect-metadata';
import { createRequire } from 'node:module';
import { Injectable, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { DatabaseService, InjectDatabase, PoolModule } from 'nestjs-pg-pools';

const env = (key: string): string => {
  const value = process.env[key];
  if (!value) throw new Error(`Cannot start the ESM consumer because ${key} is not set. Please make sure that scripts/check-consumers.sh runs it.`);
  return value;
};
const server = (port: string) => ({ host: env('PG_HOST'), port: Number(env(port)), user: env('PG_USER'), password: env('PG_PASSWORD'), database: env('PG_DATABASE') });

@Injectable()
class ReplicaReader {
  constructor(@InjectDatabase() private readonly db: DatabaseService) {}

  async whoAnswers(): Promise<{ port: number; in_recovery: boolean }> {
    const { rows } = await this.db.replica.query<{ port: number; in_recovery: boolean }>(
      'SELECT inet_server_port() AS port, pg_is_in_recovery() AS in_recovery',
    );
    return rows[0]!;
  }
}

@Module({
  imports: [
    PoolModule.forRoot({
      primary: server('PG_PRIMARY_PORT'),
      replicas: [server('PG_REPLICA1_PORT')],
      preset: 'test',
      min: 1,
      applicationName: 'consumer-esm',
      sizingAdvisor: false,
    }),
  ],
  providers: [ReplicaReader],
})
class ConsumerModule {}

setTimeout(() => {
  console.error('esm consumer: no answer within 30 s');
  process.exit(1);
}, 30_000).unref();

// No dual-package hazard: Node resolves require() and import of the package to the same ES module
// (the `module-sync` export condition), so there is one DatabaseService token however it is loaded.
const required = createRequire(import.meta.url)('nestjs-pg-pools') as { DatabaseService: unknown };
if (required.DatabaseService !== DatabaseService) {
  throw new Error('Expected require() and import of nestjs-pg-pools to give the same DatabaseService, got two copies.');
}

const app = await NestFactory.createApplicationContext(ConsumerModule, { logger: ['error', 'warn'] });
try {
  const answer = await app.get(ReplicaReader).whoAnswers();
  if (answer.in_recovery !== true || answer.port !== Number(env('PG_REPLICA1_PORT'))) {
    throw new Error(`Expected the read to be answered by the replica on port ${env('PG_REPLICA1_PORT')}, got ${JSON.stringify(answer)}.`);
  }
  console.log(`esm consumer: import from 'nestjs-pg-pools' loaded (same module as require()); replica on port ${answer.port} answered the read (pg_is_in_recovery = true)`);
} finally {
  await app.close();
}
