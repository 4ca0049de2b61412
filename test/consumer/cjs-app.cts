// A CommonJS application that consumes the packed library the way a user installs it: tsc emits
// `require('nestjs-pg-pools')`, which Node >= 20.19 serves through require(esm).
// scripts/check-consumers.sh compiles it twice against the packed typings and runs both builds:
// as a .cts with NodeNext, and as a .ts with the classic `module: commonjs` settings.
import 'reflect-metadata';
import { Injectable, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { DatabaseService, InjectDatabase, PoolModule } from 'nestjs-pg-pools';

const label = process.env.CONSUMER_LABEL ?? 'cjs consumer';
const env = (key: string): string => {
  const value = process.env[key];
  if (!value) throw new Error(`Cannot start the CommonJS consumer because ${key} is not set. Please make sure that scripts/check-consumers.sh runs it.`);
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
      replicas: [server('PG_REPLICA2_PORT')],
      preset: 'test',
      min: 1,
      applicationName: 'consumer-cjs',
      sizingAdvisor: false,
    }),
  ],
  providers: [ReplicaReader],
})
class ConsumerModule {}

async function main(): Promise<void> {
  setTimeout(() => {
    console.error(`${label}: no answer within 30 s`);
    process.exit(1);
  }, 30_000).unref();

  if (typeof require !== 'function' || typeof module !== 'object') throw new Error('Expected to run as a CommonJS module.');
  const app = await NestFactory.createApplicationContext(ConsumerModule, { logger: ['error', 'warn'] });
  try {
    const answer = await app.get(ReplicaReader).whoAnswers();
    if (answer.in_recovery !== true || answer.port !== Number(env('PG_REPLICA2_PORT'))) {
      throw new Error(`Expected the read to be answered by the replica on port ${env('PG_REPLICA2_PORT')}, got ${JSON.stringify(answer)}.`);
    }
    console.log(`${label}: require('nestjs-pg-pools') loaded; replica on port ${answer.port} answered the read (pg_is_in_recovery = true)`);
  } finally {
    await app.close();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
