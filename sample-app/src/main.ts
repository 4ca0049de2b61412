import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { AppModule } from './app.module.js';
import { addressOf, databaseOptions } from './database.config.js';

const DEFAULT_PORT = 3000;

function listenPort(value: string | undefined): number {
  if (value === undefined || value === '') return DEFAULT_PORT;
  const port = /^[0-9]{1,5}$/.test(value) ? Number(value) : NaN;
  if (!Number.isInteger(port) || port < 0 || port > 65_535) {
    throw new Error(`Invalid environment variable PORT: expected an integer from 0 to 65535, got ${JSON.stringify(value)}.`);
  }
  return port;
}

async function bootstrap(): Promise<void> {
  const port = listenPort(process.env.PORT);
  const host = process.env.HOST || '127.0.0.1';
  const app = await NestFactory.create(AppModule);
  app.enableShutdownHooks();
  await app.listen(port, host);

  const base = `http://${host.includes(':') ? `[${host}]` : host}:${(app.getHttpServer().address() as { port: number }).port}`;
  const options = databaseOptions();
  const replicas = (options.replicas ?? []).map((r) => addressOf(r.connectionString!));
  const lines = [
    `nestjs-pg-pools sample app on ${base} (Ctrl+C stops it)`,
    `  users      ${base}/users`,
    `  health     ${base}/health`,
    `  ping       ${base}/ping (never touches the database)`,
    `  metrics    ${base}/metrics`,
    `  pool JSON  ${base}/metrics/db-pool`,
    `  dashboard  ${base}/metrics/db-pool/dashboard`,
    `  database   primary ${addressOf([options.primary!].flat()[0]!.connectionString!)}, replicas ${replicas.join(', ') || 'none'}`,
  ];
  console.log(lines.join('\n'));
}

bootstrap().catch((err: unknown) => {
  new Logger('SampleApp').error(err instanceof Error ? err.message : String(err));
  process.exitCode = 1;
});
