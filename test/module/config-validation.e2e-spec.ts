import { jest } from '@jest/globals';
import { Module, type DynamicModule } from '@nestjs/common';
import { ConfigModule, ConfigService } from '@nestjs/config';
import { NestFactory } from '@nestjs/core';
import { PoolConfigurationError, PoolConnectionError, PoolModule, type PoolModuleRootOptions } from 'nestjs-pg-pools';
import { clusterConfig, nodeOptions } from '../support/cluster.js';
import { captureOutput, librarySessions, nodeUrl } from '../support/foundation-db.js';
import { CapturingLogger } from '../support/logger.js';

jest.setTimeout(15_000);

const APP_NAME = 'fnd-config-validation';
const PASSWORD = clusterConfig.password;
const { primary, replica1 } = clusterConfig.ports;
const goodUrl = nodeUrl('primary');

interface StartResult {
  error: unknown;
  logs: CapturingLogger;
  output: string;
}

/** Starts an application context around `imports` and returns how it failed, with everything it printed. */
async function startFailing(imports: DynamicModule[]): Promise<StartResult> {
  @Module({ imports })
  class AppModule {}
  const logs = new CapturingLogger();
  const output = captureOutput();
  let error: unknown;
  try {
    const app = await NestFactory.createApplicationContext(AppModule, { logger: logs, abortOnError: false });
    await app.close();
  } catch (err) {
    error = err;
  } finally {
    output.restore();
  }
  if (error === undefined) throw new Error('expected the application to fail to start');
  return { error, logs, output: output.text };
}

function rootOptions(options: Record<string, unknown>, env: Record<string, string> = {}): PoolModuleRootOptions {
  return { primary: { connectionString: goodUrl }, applicationName: APP_NAME, env, ...options } as PoolModuleRootOptions;
}

function expectOneConfigurationError(result: StartResult, message: string | RegExp): void {
  expect(result.error).toBeInstanceOf(PoolConfigurationError);
  const text = (result.error as Error).message;
  if (typeof message === 'string') expect(text).toBe(message);
  else expect(text).toMatch(message);
  const logged = result.logs.entries.filter((e) => `${e.message} ${e.params}`.includes('PoolConfigurationError') || e.message.includes(text));
  expect(logged).toHaveLength(1);
  expect(logged[0]!.level).toBe('error');
}

function expectNoPassword(result: StartResult, ...secrets: string[]): void {
  for (const secret of [PASSWORD, ...secrets]) {
    expect(String((result.error as Error).message)).not.toContain(secret);
    expect(String((result.error as Error).stack)).not.toContain(secret);
    expect(result.logs.text).not.toContain(secret);
    expect(result.output).not.toContain(secret);
  }
}

const URL_HINT =
  'Special characters in the user name or password must be percent-encoded (@ as %40, # as %23, / as %2F, : as %3A, space as %20).';

const cases: Array<[string, Record<string, unknown>, Record<string, string>, string | RegExp]> = [
  ['negative max', { max: -5 }, {}, 'Invalid option `max`: expected an integer from 1 and up, got -5 (number).'],
  [
    'min greater than max',
    { min: 8, max: 4 },
    {},
    "Invalid option `min`: expected an integer from 0 to the pool's max, 4 (set by option `max`), got 8 (number).",
  ],
  [
    'unknown routing strategy',
    { routing: { strategy: 'fastest' } },
    {},
    'Invalid option `routing.strategy`: expected one of "round-robin", "random", "weighted", "least-busy", got "fastest" (string).',
  ],
  [
    'malformed URL with a password (unencoded #)',
    { primary: { connectionString: `postgres://app:${PASSWORD}#2@127.0.0.1:${primary}/app` } },
    {},
    `Invalid option \`primary.connectionString\`: expected a postgres://user:password@host:port/database connection URL, got "postgres://app:***@127.0.0.1:${primary}/app" (string). ${URL_HINT}`,
  ],
  [
    'malformed replica URL with a password (unencoded /)',
    { replicas: [{ connectionString: `postgres://app:${PASSWORD}/x@127.0.0.1:${replica1}/app` }] },
    {},
    `Invalid option \`replicas[0].connectionString\`: expected a postgres://user:password@host:port/database connection URL, got "postgres://app:***@127.0.0.1:${replica1}/app" (string). ${URL_HINT}`,
  ],
  [
    'non-numeric environment override',
    {},
    { DB_POOL_MAX_SIZE: '20x' },
    'Invalid environment variable `DB_POOL_MAX_SIZE`: expected an integer from 1 and up, got "20x" (string).',
  ],
  [
    'non-numeric statement timeout override',
    {},
    { DB_STATEMENT_TIMEOUT_MS: '30s' },
    'Invalid environment variable `DB_STATEMENT_TIMEOUT_MS`: expected an integer from 0 and up, got "30s" (string).',
  ],
  [
    'empty replica entry',
    {},
    { DB_REPLICA_URLS: `${nodeUrl('replica1')},` },
    `Invalid environment variable \`DB_REPLICA_URLS\`: expected a comma-separated list of connection URLs with no empty entry, got "postgres://app:***@127.0.0.1:${replica1}/app," (string). Entry 2 is empty.`,
  ],
  [
    'unknown option key',
    { replica: [{ connectionString: goodUrl }] },
    {},
    /^Invalid option `replica`: expected one of the known options \(name, isGlobal, primary, replicas, preset, min, max, .*, env\), got an array of 1\. Did you mean `replicas`\?$/,
  ],
  [
    'leak detection threshold below 2000',
    { leakDetectionThresholdMs: 500 },
    {},
    'Invalid option `leakDetectionThresholdMs`: expected 0 (off) or an integer from 2000 and up, got 500 (number).',
  ],
  // Node fires a timer above 2^31-1 ms after 1 ms: acquireTimeoutMs 3e9 would fail every connect.
  [
    'acquire timeout above the longest timer',
    { acquireTimeoutMs: 3e9 },
    {},
    'Invalid option `acquireTimeoutMs`: expected an integer from 1 to 2147483647 (the longest delay a Node.js timer can wait, about 24.8 days), got 3000000000 (number).',
  ],
  [
    'replica idle timeout above the longest timer',
    { replicas: [{ connectionString: nodeUrl('replica1'), idleTimeoutMs: 2 ** 31 }] },
    {},
    'Invalid option `replicas[0].idleTimeoutMs`: expected an integer from 0 to 2147483647 (the longest delay a Node.js timer can wait, about 24.8 days), got 2147483648 (number).',
  ],
  [
    'acquire timeout override above the longest timer',
    {},
    { DB_POOL_ACQUIRE_TIMEOUT_MS: '3000000000' },
    'Invalid environment variable `DB_POOL_ACQUIRE_TIMEOUT_MS`: expected an integer from 1 to 2147483647 (the longest delay a Node.js timer can wait, about 24.8 days), got "3000000000" (string).',
  ],
  [
    'routing, breaker and shutdown delays above the longest timer',
    { routing: { replicaBanMs: 1e10 } },
    {},
    'Invalid option `routing.replicaBanMs`: expected an integer from 0 to 2147483647 (the longest delay a Node.js timer can wait, about 24.8 days), got 10000000000 (number).',
  ],
  [
    'breaker reset timeout above the longest timer',
    { breaker: { resetTimeoutMs: 2 ** 32 } },
    {},
    'Invalid option `breaker.resetTimeoutMs`: expected an integer from 1 to 2147483647 (the longest delay a Node.js timer can wait, about 24.8 days), got 4294967296 (number).',
  ],
  [
    'alert interval above the longest timer',
    { alerts: { intervalMs: 2 ** 31 } },
    {},
    'Invalid option `alerts.intervalMs`: expected an integer from 100 to 2147483647 (the longest delay a Node.js timer can wait, about 24.8 days), got 2147483648 (number).',
  ],
  ['unknown DB_ENV', {}, { DB_ENV: 'prod' }, 'Invalid environment variable `DB_ENV`: expected one of "development", "production", "test", got "prod" (string).'],
  [
    'DB_PRIMARY_URL that is not a postgres URL',
    {},
    { DB_PRIMARY_URL: `mysql://app:${PASSWORD}@127.0.0.1:${primary}/app` },
    `Invalid environment variable \`DB_PRIMARY_URL\`: expected a URL starting with postgres:// or postgresql://, got "mysql://app:***@127.0.0.1:${primary}/app" (string).`,
  ],
  [
    'password of the wrong type',
    { primary: { ...nodeOptions('primary'), password: 12345 } },
    {},
    'Invalid option `primary.password`: expected a string or a function returning one, got [redacted].',
  ],
  [
    'misspelled password key',
    { primary: { ...nodeOptions('primary'), password: undefined, pasword: PASSWORD } },
    {},
    'Invalid option `primary.pasword`: expected a pg.PoolConfig field or one of name, weight, endpoint, min, max, acquireTimeoutMs, idleTimeoutMs, statementTimeoutMs, maxUses, maxLifetimeMs, validateIdleAfterMs, leakDetectionThresholdMs, keepAliveMs, connectTimeoutMs, queryTimeoutMs, validationTimeoutMs, got [redacted]. Did you mean `primary.password`?',
  ],
];

describe('a bad option fails the start with one PoolConfigurationError', () => {
  it.each(cases)('%s', async (_title, options, env, message) => {
    const result = await startFailing([PoolModule.forRoot(rootOptions(options, env))]);
    expectOneConfigurationError(result, message);
    expectNoPassword(result);
    expect(await librarySessions(APP_NAME)).toBe(0);
  });

  it('names the field of a named database with its own DB_<NAME>_ variable', async () => {
    const result = await startFailing([
      PoolModule.forRoot(rootOptions({ name: 'analytics' }, { DB_ANALYTICS_POOL_MIN_SIZE: 'two' })),
    ]);
    expectOneConfigurationError(result, 'Invalid environment variable `DB_ANALYTICS_POOL_MIN_SIZE`: expected an integer from 0 and up, got "two" (string).');
  });

  it('validates what a forRootAsync factory returns (ConfigService)', async () => {
    const result = await startFailing([
      PoolModule.forRootAsync({
        imports: [ConfigModule.forRoot({ ignoreEnvFile: true, load: [() => ({ DATABASE_URL: `postgres://app:${PASSWORD}@127.0.0.1:port/app` })] })],
        inject: [ConfigService],
        useFactory: (config: ConfigService) => ({ primary: { connectionString: config.get<string>('DATABASE_URL') }, applicationName: APP_NAME, env: {} }),
      }),
    ]);
    expectOneConfigurationError(
      result,
      `Invalid option \`primary.connectionString\`: expected a postgres://user:password@host:port/database connection URL, got "postgres://app:***@127.0.0.1:port/app" (string). ${URL_HINT}`,
    );
    expectNoPassword(result);
  });
});

describe('a rejected password', () => {
  it('fails with PoolConnectionError naming host:port and the server error, never the password', async () => {
    const wrong = 'Wrong-Pa55word-xyz';
    const result = await startFailing([
      PoolModule.forRoot(rootOptions({ primary: nodeOptions('primary', { password: wrong }), retryAttempts: 2, retryDelayMs: 20 })),
    ]);
    expect(result.error).toBeInstanceOf(PoolConnectionError);
    expect((result.error as Error).message).toMatch(
      new RegExp(
        `^Cannot connect to "default/primary" at 127\\.0\\.0\\.1:${primary} after 2 attempt\\(s\\): (error: )?password authentication failed for user "app"\\. ` +
          'Please make sure that the server is running and the connection settings are right\\.$',
      ),
    );
    expect(result.logs.messages('warn')).toEqual([
      expect.stringMatching(new RegExp(`^Connecting to "default/primary" at 127\\.0\\.0\\.1:${primary} failed \\(attempt 1/2\\): .*password authentication failed for user "app"\\. Retrying in 20ms\\.$`)),
    ]);
    expectNoPassword(result, wrong);
    expect(await librarySessions(APP_NAME)).toBe(0);
  });

  it('keeps a wrong password given in a URL out of errors and logs', async () => {
    const wrong = 'Url-Wrong-Pa55';
    const result = await startFailing([PoolModule.forRoot(rootOptions({ primary: { connectionString: nodeUrl('primary', wrong) }, retryAttempts: 1 }))]);
    expect(result.error).toBeInstanceOf(PoolConnectionError);
    expect((result.error as Error).message).toContain('password authentication failed for user "app"');
    expectNoPassword(result, wrong);
  });
});
