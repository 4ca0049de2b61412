import { Module } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { PoolConfigurationError, PoolModule, type PoolModuleRootOptions } from 'nestjs-pg-pools';
import { clusterConfig, connectionString } from '../support/cluster.js';
import { expectNoSessionsLeft } from '../support/sessions.js';

// Servers are told apart by what they are (system identifier + the address they answer on), not
// by config entry: the same server listed twice fails the start with one clear error naming both
// entries, and is never reported as a split brain (nothing is fenced). Real cluster.

const APP = 'e2e-failover-identity';

async function startError(options: Partial<PoolModuleRootOptions>): Promise<{ error: unknown; warnings: string[] }> {
  const warnings: string[] = [];
  @Module({ imports: [PoolModule.forRoot({ applicationName: APP, preset: 'test', retryAttempts: 1, ...options } as PoolModuleRootOptions)] })
  class AppModule {}
  const logger = { log: () => undefined, error: () => undefined, warn: (m: unknown) => void warnings.push(String(m)), debug: () => undefined, verbose: () => undefined };
  let error: unknown;
  try {
    // The pools start while the module compiles.
    const ref = await Test.createTestingModule({ imports: [AppModule] }).setLogger(logger).compile();
    const app = ref.createNestApplication({ logger });
    await app.init();
    await app.close();
  } catch (err) {
    error = err;
  }
  return { error, warnings };
}

describe('the same server listed twice (real cluster)', () => {
  afterAll(() => expectNoSessionsLeft(APP));

  it('the primary again in replicas: one start-up error naming both entries, no split brain', async () => {
    const { error, warnings } = await startError({
      primary: { ...clusterConfig.primary },
      replicas: [{ ...clusterConfig.replica1 }, { connectionString: connectionString('primary') }],
    });
    expect(error).toBeInstanceOf(PoolConfigurationError);
    expect((error as Error).message).toMatch(/^Invalid option `replicas\[1\]`: expected a server that no other entry reaches, got replica-2 \(127\.0\.0\.1:\d+\), the same server as primary \(127\.0\.0\.1:\d+\): system \d+ 127\.0\.0\.1:\d+\. Please make sure that every server is listed once/);
    expect(warnings.filter((w) => w.includes('split brain'))).toEqual([]);
  });

  it('a multi-host primary plus the same hosts in replicas: the same error', async () => {
    const { user, password, database, host, ports } = clusterConfig;
    const multi = `postgres://${user}:${encodeURIComponent(password)}@${host}:${ports.primary},${host}:${ports.replica1}/${database}?target_session_attrs=read-write`;
    const { error, warnings } = await startError({ primary: { connectionString: multi }, replicas: [{ connectionString: connectionString('replica1') }] });
    expect(error).toBeInstanceOf(PoolConfigurationError);
    expect((error as Error).message).toContain('the same server as');
    expect(warnings.filter((w) => w.includes('split brain'))).toEqual([]);
  });
});
