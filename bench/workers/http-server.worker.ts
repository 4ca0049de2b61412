import 'reflect-metadata';
import type { INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { benchLogger } from '../bench.logger.js';

// Child process of the HTTP scenario (run with --import bench.loader.js): serves the sample app
// (`ours`, configured by the DB_* variables the parent sets) or the same GET /users/:id route on
// a hand-written pg.Pool provider (`raw`) on 127.0.0.1 (random port), reports the port over IPC
// and closes the app on `stop` (or when the parent goes away).

const side = process.argv[2];
if (side !== 'ours' && side !== 'raw') {
  throw new Error(`Expected the side (ours or raw) as the first argument, got ${JSON.stringify(side)}.`);
}

let app: INestApplication | undefined;

async function stop(code: number): Promise<void> {
  await app?.close();
  process.exit(code);
}

process.on('message', (message) => {
  if ((message as { cmd?: string }).cmd === 'stop') void stop(0);
});
process.on('disconnect', () => void stop(0));

try {
  const root =
    side === 'ours'
      ? (await import('../../sample-app/src/app.module.js')).AppModule
      : (await import('../http/users-raw.module.js')).RawUsersModule;
  app = await NestFactory.create(root, { logger: benchLogger, abortOnError: false });
  await app.listen(0, '127.0.0.1');
  const address = app.getHttpServer().address() as { port: number };
  process.send!({ cmd: 'ready', port: address.port });
} catch (err) {
  process.send!({ cmd: 'failed', message: err instanceof Error ? err.message : String(err) });
  await stop(1);
}
