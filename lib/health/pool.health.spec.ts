import { ClusterRegistry } from '../core/cluster-registry.js';
import { jest } from '@jest/globals';
import type { ModuleRef } from '@nestjs/core';

// @nestjs/terminus is an optional peer: without it the library loads, and the indicator fails
// with one clear error the first time it is used. The module is replaced before anything imports it.

jest.unstable_mockModule('@nestjs/terminus', () => {
  throw Object.assign(new Error("Cannot find package '@nestjs/terminus' imported from /app/node_modules/nestjs-pg-pools/dist/health/pool.health.js"), {
    code: 'ERR_MODULE_NOT_FOUND',
  });
});

const { PoolHealthIndicator } = await import('./pool.health.js');
const { PoolError } = await import('../pool.exceptions.js');

const moduleRef = {
  get: () => {
    throw new Error('no provider');
  },
} as unknown as ModuleRef;

describe('PoolHealthIndicator without @nestjs/terminus', () => {
  it('rejects check() and pingCheck() with an error that says what to install', async () => {
    const indicator = new PoolHealthIndicator(moduleRef, new ClusterRegistry());
    const expected =
      "Cannot use PoolHealthIndicator because @nestjs/terminus could not be loaded (Cannot find package '@nestjs/terminus' imported from " +
      '/app/node_modules/nestjs-pg-pools/dist/health/pool.health.js). Please make sure that @nestjs/terminus ^11 or ^12 is installed ' +
      '(npm install @nestjs/terminus) and TerminusModule is imported.';
    await expect(indicator.check()).rejects.toThrow(expected);
    await expect(indicator.pingCheck('primary')).rejects.toThrow(expected);
    await expect(indicator.check('database')).rejects.toBeInstanceOf(PoolError);
  });
});
