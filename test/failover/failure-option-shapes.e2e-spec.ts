import { PoolConfigurationError, type PoolModuleRootOptions } from 'nestjs-pg-pools';
import { startupError } from '../support/app.js';
import { nodeOptions, replicaOptions } from '../support/cluster.js';
import { expectNoSessionsLeft } from '../support/sessions.js';

// Bad option shapes get the module's one clear error (field, expected, got) when the app starts —
// never a TypeError from deep inside, never silence — and open no connection.

const APP = 'e2e-failure-option-shapes';

describe('option shapes are validated at start-up (real app, real servers)', () => {
  const good = (): PoolModuleRootOptions => ({ applicationName: APP, primary: nodeOptions('primary'), replicas: replicaOptions(), env: {} });
  const cases: Array<[string, Record<string, unknown>, string]> = [
    // eslint-disable-next-line no-sparse-arrays
    ['a hole in replicas', { replicas: [, nodeOptions('replica2')] }, 'option `replicas[0]`'],
    ['name an object', { name: {} }, 'option `name`'],
    ['name a number', { name: 42 }, 'option `name`'],
    ['routing: 42', { routing: 42 }, 'option `routing`'],
    ['monitor: null', { monitor: null }, 'option `monitor`'],
    ["ssl: 'yes'", { primary: nodeOptions('primary', { ssl: 'yes' as never }) }, 'option `primary.ssl`'],
    ['isGlobal: 1e308', { isGlobal: 1e308 }, 'option `isGlobal`'],
    ["env: 'x'", { env: 'x' }, 'option `env`'],
    ["routing.consistencyHeader: 'bad header'", { routing: { consistencyHeader: 'bad header' } }, 'option `routing.consistencyHeader`'],
  ];

  it.each(cases)('%s', async (_title, bad, field) => {
    const err = await startupError({ ...good(), ...bad } as PoolModuleRootOptions);
    expect(err).toBeInstanceOf(PoolConfigurationError);
    expect((err as PoolConfigurationError).field).toBe(field);
    expect((err as Error).message).toMatch(/^Invalid option `[^`]+`: expected .+, got .+/);
    await expectNoSessionsLeft(APP);
  });
});
