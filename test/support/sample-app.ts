import type { INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { AppModule } from '../../sample-app/src/app.module.js';
import { adminQuery, connectionString } from './cluster.js';
import type { CapturingLogger } from './logger.js';

// Helpers of the sample application's e2e tests (test/sample-app-*.e2e-spec.ts).

/** Deletes the users a test created (and their events) on the primary. */
export async function deleteUsers(ids: readonly number[]): Promise<void> {
  if (ids.length === 0) return;
  await adminQuery('primary', 'DELETE FROM users WHERE id = ANY($1::int[])', [ids]);
  await adminQuery('primary', 'DELETE FROM user_events WHERE user_id = ANY($1::int[])', [ids]);
}

/**
 * The sample application as its README starts it: configured by DB_* environment variables (the
 * real primary and both replicas, `applicationName`, the test preset), initialised without HTTP.
 * The caller restores `process.env` afterwards.
 */
export async function startSampleApp(applicationName: string, logger?: CapturingLogger): Promise<INestApplication> {
  process.env.DB_PRIMARY_URL = connectionString('primary');
  process.env.DB_REPLICA_URLS = `${connectionString('replica1')},${connectionString('replica2')}`;
  process.env.DB_APPLICATION_NAME = applicationName;
  process.env.DB_ENV = 'test';
  const moduleRef = await Test.createTestingModule({ imports: [AppModule] }).compile();
  const app = moduleRef.createNestApplication({ logger: logger ?? false });
  await app.init();
  return app;
}
