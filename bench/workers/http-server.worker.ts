import 'reflect-metadata';
import type { INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { benchLogger } from '../bench.logger.js';

// Child process of the HTTP scenario (run with --import bench.loader.js): serves the sample app
// (`ours`, configured by the DB_* variables the parent sets) or the same GET /users/:id and
// GET /ping routes on a hand-written pg.Pool provider (`raw`; `raw-scoped` adds a request-scoped
// AsyncLocalStorage opened by a middleware), on Express or Fastify (second argument), on
// 127.0.0.1 (random port); reports the port over IPC, answers `cpu` with its CPU time so far, and
// closes the app on `stop` (or when the parent goes away).

const side = process.argv[2];
const adapter = process.argv[3] ?? 'express';
if ((side !== 'ours' && side !== 'raw' && side !== 'raw-scoped') || (adapter !== 'express' && adapter !== 'fastify')) {
  throw new Error(`Expected <ours|raw|raw-scoped> [express|fastify] as arguments, got ${JSON.stringify(process.argv.slice(2))}.`);
}

let app: INestApplication | undefined;

async function stop(code: number): Promise<void> {
  await app?.close();
  process.exit(code);
}

process.on('message', (message) => {
  const cmd = (message as { cmd?: string }).cmd;
  if (cmd === 'stop') void stop(0);
  else if (cmd === 'cpu') process.send!({ cmd, ...process.cpuUsage() });
});
process.on('disconnect', () => void stop(0));

try {
  const root =
    side === 'ours'
      ? (await import('../../sample-app/src/app.module.js')).AppModule
      : side === 'raw'
        ? (await import('../http/users-raw.module.js')).RawUsersModule
        : (await import('../http/request-scope.module.js')).RawScopedUsersModule;
  const options = { logger: benchLogger, abortOnError: false };
  app = adapter === 'fastify' ? await NestFactory.create(root, new FastifyAdapter(), options) : await NestFactory.create(root, options);
  await app.listen(0, '127.0.0.1');
  const address = app.getHttpServer().address() as { port: number };
  process.send!({ cmd: 'ready', port: address.port });
} catch (err) {
  process.send!({ cmd: 'failed', message: err instanceof Error ? err.message : String(err) });
  await stop(1);
}
