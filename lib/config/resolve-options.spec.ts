import { PoolConfigurationError } from '../pool.exceptions.js';
import type { PoolModuleRootOptions } from '../pool.interfaces.js';
import { POOL_PRESETS } from './presets.js';
import { envPrefix, resolveModuleIdentity, resolveOptions } from './resolve-options.js';

const PASSWORD = 'unit-Secret-pw-42';
const PRIMARY_URL = `postgres://app:${PASSWORD}@db-primary:5432/app`;
const REPLICA_URL = `postgres://app:${PASSWORD}@db-replica:5433/app`;

function resolve(options: Partial<PoolModuleRootOptions> & Record<string, unknown>, env: Record<string, string> = {}) {
  return resolveOptions({ primary: { connectionString: PRIMARY_URL }, env, ...options } as PoolModuleRootOptions);
}

function configError(run: () => unknown): PoolConfigurationError {
  try {
    run();
  } catch (err) {
    expect(err).toBeInstanceOf(PoolConfigurationError);
    return err as PoolConfigurationError;
  }
  throw new Error('expected a PoolConfigurationError, but the options were accepted');
}

describe('resolveOptions: presets', () => {
  it.each(['development', 'production', 'test'] as const)('applies the %s preset to every node', (preset) => {
    const resolved = resolve({ replicas: [{ connectionString: REPLICA_URL }] }, { DB_ENV: preset });
    const expected = POOL_PRESETS[preset];
    expect(resolved.preset).toBe(preset);
    for (const node of [resolved.primary, ...resolved.replicas]) {
      expect({
        min: node.min,
        max: node.max,
        acquireTimeoutMs: node.acquireTimeoutMs,
        idleTimeoutMs: node.idleTimeoutMs,
        statementTimeoutMs: node.statementTimeoutMs,
        maxUses: node.maxUses,
        connectTimeoutMs: node.connectTimeoutMs,
        validationTimeoutMs: node.validationTimeoutMs,
        keepAliveMs: node.keepAliveMs,
      }).toEqual(expected);
      expect(node.queryTimeoutMs).toBe(expected.statementTimeoutMs + 5000);
    }
  });

  it('holds the numbers of seed 003', () => {
    expect(POOL_PRESETS.development).toMatchObject({ min: 5, max: 20, statementTimeoutMs: 60_000, idleTimeoutMs: 300_000, maxUses: 50_000 });
    expect(POOL_PRESETS.production).toMatchObject({ min: 10, max: 50, statementTimeoutMs: 60_000, idleTimeoutMs: 300_000, maxUses: 50_000 });
    expect(POOL_PRESETS.test).toMatchObject({ min: 2, max: 5, statementTimeoutMs: 30_000, idleTimeoutMs: 60_000, maxUses: 10_000 });
  });

  it('picks the preset from `preset`, else DB_ENV, else NODE_ENV, else development', () => {
    expect(resolve({ preset: 'test' }, { DB_ENV: 'production', NODE_ENV: 'development' }).preset).toBe('test');
    expect(resolve({}, { DB_ENV: 'production', NODE_ENV: 'test' }).preset).toBe('production');
    expect(resolve({}, { NODE_ENV: 'test' }).preset).toBe('test');
    expect(resolve({}, { NODE_ENV: 'staging' }).preset).toBe('development');
    expect(resolve({}, {}).preset).toBe('development');
    expect(resolve({}, { DB_ENV: '', NODE_ENV: 'production' }).preset).toBe('production');
  });

  it('reads process.env when no `env` is given', () => {
    const saved = process.env.DB_POOL_MAX_SIZE;
    process.env.DB_POOL_MAX_SIZE = '17';
    try {
      const resolved = resolveOptions({ primary: { connectionString: PRIMARY_URL }, preset: 'development' });
      expect(resolved.primary.max).toBe(17);
    } finally {
      if (saved === undefined) delete process.env.DB_POOL_MAX_SIZE;
      else process.env.DB_POOL_MAX_SIZE = saved;
    }
  });
});

describe('resolveOptions: precedence preset < explicit < environment', () => {
  const cases = [
    ['min', 'DB_POOL_MIN_SIZE', 1, 3],
    ['max', 'DB_POOL_MAX_SIZE', 30, 40],
    ['acquireTimeoutMs', 'DB_POOL_ACQUIRE_TIMEOUT_MS', 1234, 4321],
    ['idleTimeoutMs', 'DB_POOL_IDLE_TIMEOUT_MS', 1111, 2222],
    ['statementTimeoutMs', 'DB_STATEMENT_TIMEOUT_MS', 7000, 8000],
  ] as const;

  it.each(cases)('%s: explicit beats the preset, %s beats both', (key, envName, explicit, fromEnv) => {
    expect(resolve({}, { DB_ENV: 'development' }).primary[key]).toBe(POOL_PRESETS.development[key]);
    expect(resolve({ [key]: explicit }, { DB_ENV: 'development' }).primary[key]).toBe(explicit);
    expect(resolve({ [key]: explicit }, { DB_ENV: 'development', [envName]: String(fromEnv) }).primary[key]).toBe(fromEnv);
  });

  it('lets a node override the database-wide value, but not an environment variable', () => {
    const resolved = resolve({ max: 12, primary: { connectionString: PRIMARY_URL, max: 7 }, replicas: [{ connectionString: REPLICA_URL }] });
    expect(resolved.primary.max).toBe(7);
    expect(resolved.replicas[0]!.max).toBe(12);
    const overridden = resolve({ primary: { connectionString: PRIMARY_URL, max: 7 } }, { DB_POOL_MAX_SIZE: '9' });
    expect(overridden.primary.max).toBe(9);
  });

  it('lowers a preset min to a smaller max chosen by the user, at database and node level', () => {
    expect(resolve({ max: 3 }, { DB_ENV: 'production' }).primary).toMatchObject({ min: 3, max: 3 });
    expect(resolve({ primary: { connectionString: PRIMARY_URL, max: 2 } }, { DB_ENV: 'development' }).primary).toMatchObject({ min: 2, max: 2 });
    expect(resolve({}, { DB_ENV: 'production', DB_POOL_MAX_SIZE: '4' }).primary).toMatchObject({ min: 4, max: 4 });
  });

  it('replaces the primary connection with DB_PRIMARY_URL and keeps the node settings', () => {
    const resolved = resolve(
      { primary: { host: 'ignored', port: 1, password: PASSWORD, name: 'main', max: 6 } },
      { DB_PRIMARY_URL: 'postgres://app:other-pw@env-primary:6000/app' },
    );
    expect(resolved.primary).toMatchObject({ name: 'main', max: 6, address: 'env-primary:6000' });
    expect(resolved.primary.poolConfig).toMatchObject({ connectionString: 'postgres://app:other-pw@env-primary:6000/app' });
    expect(resolved.primary.poolConfig.host).toBeUndefined();
    expect(resolved.secrets).toEqual(['other-pw']);
  });

  it('replaces the replicas with DB_REPLICA_URLS and keeps names and weights by position', () => {
    const resolved = resolve(
      { replicas: [{ connectionString: REPLICA_URL, name: 'east', weight: 3 }] },
      { DB_REPLICA_URLS: ' postgres://app:pw@r1:7001/app , postgres://app:pw@r2:7002/app' },
    );
    expect(resolved.replicas.map((r) => [r.name, r.weight, r.address])).toEqual([
      ['east', 3, 'r1:7001'],
      ['replica-2', 1, 'r2:7002'],
    ]);
  });

  it('keeps every per-replica option given in code (ssl, max, options, ...) when DB_REPLICA_URLS replaces the connections', () => {
    const ssl = { ca: 'CA PEM', rejectUnauthorized: true };
    const resolved = resolve(
      {
        replicas: [
          { connectionString: REPLICA_URL, name: 'east', weight: 3, max: 4, ssl, options: '-c search_path=app' },
          { host: 'ignored', port: 1, user: 'u', password: 'code-pw', database: 'd', max: 2, ssl: false },
        ],
      },
      { DB_REPLICA_URLS: 'postgres://app:pw@r1:7001/app,postgres://app:pw@r2:7002/app?sslmode=verify-full,postgres://app:pw@r3:7003/app' },
    );
    expect(resolved.replicas.map((r) => [r.name, r.weight, r.max, r.address])).toEqual([
      ['east', 3, 4, 'r1:7001'],
      ['replica-2', 1, 2, 'r2:7002'],
      ['replica-3', 1, expect.any(Number), 'r3:7003'],
    ]);
    expect(resolved.replicas[0]!.poolConfig).toMatchObject({ connectionString: 'postgres://app:pw@r1:7001/app', ssl });
    expect(resolved.replicas[0]!.poolConfig.options).toContain('-c search_path=app');
    // The URL's connection fields win; the URL (with its sslmode) goes to pg as given.
    expect(resolved.replicas[1]!.poolConfig).toMatchObject({ connectionString: 'postgres://app:pw@r2:7002/app?sslmode=verify-full', ssl: false });
    for (const key of ['host', 'port', 'user', 'password', 'database'] as const) expect(resolved.replicas[1]!.poolConfig[key]).toBeUndefined();
    expect(resolved.replicas[2]!.poolConfig.ssl).toBeUndefined();
    expect(resolved.secrets).not.toContain('code-pw');
  });

  it('uses DB_<NAME>_ variables for a named database and ignores the default ones', () => {
    expect(envPrefix('default')).toBe('DB_');
    expect(envPrefix('analytics')).toBe('DB_ANALYTICS_');
    expect(envPrefix('read-model')).toBe('DB_READ_MODEL_');
    const resolved = resolve({ name: 'analytics' }, { DB_POOL_MAX_SIZE: '11', DB_ANALYTICS_POOL_MAX_SIZE: '13' });
    expect(resolved.database).toBe('analytics');
    expect(resolved.primary.max).toBe(13);
    expect(resolve({ name: 'analytics' }, { DB_POOL_MAX_SIZE: '11' }).primary.max).toBe(20);
  });

  it('reads APP_INSTANCES for the sizing advisor, the option wins', () => {
    expect(resolve({}, { APP_INSTANCES: '4' }).instances).toBe(4);
    expect(resolve({ instances: 2 }, { APP_INSTANCES: '4' }).instances).toBe(2);
    expect(resolve({}, {}).instances).toBe(1);
  });
});

describe('resolveOptions: defaults and the pg config', () => {
  it('fills every documented default', () => {
    const resolved = resolve({}, {});
    expect(resolved).toMatchObject({
      database: 'default',
      applicationName: 'nestjs-pg-pools',
      timezone: 'UTC',
      lazy: false,
      retryAttempts: 5,
      retryDelayMs: 500,
      instances: 1,
      sizingAdvisor: true,
      shutdownTimeoutMs: 10_000,
      slowQueryMs: 1000,
      pgbouncer: false,
      routing: {
        strategy: 'round-robin',
        fallbackToPrimary: true,
        replicaBanMs: 30_000,
        maxReplicationLagMs: 10_000,
        maxReplicationLagBytes: 0,
        lagCheckIntervalMs: 1000,
        consistency: 'read-your-writes',
        consistencyHeader: 'x-pg-consistency-token',
        readOnlyInTransaction: 'join',
      },
      breaker: { failureThreshold: 5, resetTimeoutMs: 10_000 },
      metrics: { enabled: true, prometheusPath: 'metrics', jsonPath: 'metrics/db-pool' },
    });
    expect(resolved.primary).toMatchObject({
      name: 'primary',
      role: 'primary',
      weight: 1,
      maxLifetimeMs: 1_800_000,
      validateIdleAfterMs: 500,
      leakDetectionThresholdMs: 0,
      keepAliveMs: 10_000,
      connectTimeoutMs: 5000,
      validationTimeoutMs: 5000,
      queryTimeoutMs: 65_000,
    });
  });

  it('sends application_name, statement_timeout, TimeZone and read-only replicas as startup settings', () => {
    const resolved = resolve(
      { applicationName: 'unit-app', timezone: 'Europe/Paris', statementTimeoutMs: 1500, replicas: [{ connectionString: REPLICA_URL }] },
      {},
    );
    expect(resolved.primary.poolConfig).toMatchObject({
      application_name: 'unit-app',
      options: '-c statement_timeout=1500 -c TimeZone=Europe/Paris',
      max: 20,
      min: 5,
      connectionTimeoutMillis: 10_000,
      idleTimeoutMillis: 300_000,
    });
    expect(resolved.replicas[0]!.poolConfig.options).toBe('-c statement_timeout=1500 -c TimeZone=Europe/Paris -c default_transaction_read_only=on');
  });

  it('keeps the user options string, escapes spaces, and sends no session settings behind PgBouncer', () => {
    const withOptions = resolve({ primary: { connectionString: PRIMARY_URL, options: '-c search_path=app' }, timezone: 'America/Argentina/Buenos_Aires' }, {});
    expect(withOptions.primary.poolConfig.options).toBe('-c search_path=app -c statement_timeout=60000 -c TimeZone=America/Argentina/Buenos_Aires');
    const bouncer = resolve({ pgbouncer: true, replicas: [{ connectionString: REPLICA_URL }] }, {});
    expect(bouncer.primary.poolConfig.options).toBeUndefined();
    expect(bouncer.replicas[0]!.poolConfig.options).toBeUndefined();
  });

  it('never exposes the password when the resolved options are logged', () => {
    const resolved = resolve({ replicas: [{ host: 'r', port: 5433, user: 'app', password: PASSWORD }] }, {});
    const printed = JSON.stringify(resolved) + String(Object.keys(resolved.primary));
    expect(printed).not.toContain(PASSWORD);
    expect(resolved.primary.address).toBe('db-primary:5432');
    expect(resolved.replicas[0]!.address).toBe('r:5433');
    expect(resolved.secrets).toEqual([PASSWORD, PASSWORD]);
    expect(Object.keys(resolved)).not.toContain('secrets');
    expect(Object.keys(resolved.primary)).not.toContain('poolConfig');
  });

  it('accepts pg.PoolConfig fields it does not know, so newer pg options pass through', () => {
    const resolved = resolve({ primary: { connectionString: PRIMARY_URL, sslmode: 'disable', query_timeout: 5000 } as never }, {});
    expect(resolved.primary.poolConfig).toMatchObject({ sslmode: 'disable', query_timeout: 5000 });
  });
});

describe('resolveOptions: validation', () => {
  const cases: Array<[string, Record<string, unknown>, Record<string, string>, string]> = [
    ['negative max', { max: -1 }, {}, 'Invalid option `max`: expected an integer from 1 and up, got -1 (number).'],
    ['fractional max', { max: 2.5 }, {}, 'Invalid option `max`: expected an integer from 1 and up, got 2.5 (number).'],
    ['string max', { max: '10' }, {}, 'Invalid option `max`: expected an integer from 1 and up, got "10" (string).'],
    [
      'min > max',
      { min: 10, max: 5 },
      {},
      "Invalid option `min`: expected an integer from 0 to the pool's max, 5 (set by option `max`), got 10 (number).",
    ],
    [
      'min above the preset max',
      { min: 30 },
      {},
      "Invalid option `min`: expected an integer from 0 to the pool's max, 20 (the development preset), got 30 (number).",
    ],
    [
      'node min > database max',
      { primary: { connectionString: PRIMARY_URL, min: 9 }, max: 8 },
      {},
      "Invalid option `primary.min`: expected an integer from 0 to the pool's max, 8 (set by option `max`), got 9 (number).",
    ],
    [
      'env min > env max',
      {},
      { DB_POOL_MIN_SIZE: '30', DB_POOL_MAX_SIZE: '10' },
      "Invalid environment variable `DB_POOL_MIN_SIZE`: expected an integer from 0 to the pool's max, 10 (set by environment variable `DB_POOL_MAX_SIZE`), got \"30\" (string).",
    ],
    [
      'unknown strategy',
      { routing: { strategy: 'fastest' } },
      {},
      'Invalid option `routing.strategy`: expected one of "round-robin", "random", "weighted", "least-busy", got "fastest" (string).',
    ],
    [
      'malformed URL (port)',
      { primary: { connectionString: `postgres://app:${PASSWORD}@127.0.0.1:notaport/app` } },
      {},
      'Invalid option `primary.connectionString`: expected a postgres://user:password@host:port/database connection URL, got "postgres://app:***@127.0.0.1:notaport/app" (string). Special characters in the user name or password must be percent-encoded (@ as %40, # as %23, / as %2F, : as %3A, space as %20).',
    ],
    [
      'malformed URL (unencoded password)',
      { primary: { connectionString: 'postgres://app:pa@ss/w#rd@127.0.0.1:5432/app' } },
      {},
      'Invalid option `primary.connectionString`: expected a postgres://user:password@host:port/database connection URL with one @ before the host, got "postgres://app:***@127.0.0.1:5432/app" (string). Special characters in the user name or password must be percent-encoded (@ as %40, # as %23, / as %2F, : as %3A, space as %20).',
    ],
    [
      'wrong scheme',
      { primary: { connectionString: `mysql://app:${PASSWORD}@h/app` } },
      {},
      'Invalid option `primary.connectionString`: expected a URL starting with postgres:// or postgresql://, got "mysql://app:***@h/app" (string).',
    ],
    [
      'non-numeric env override',
      {},
      { DB_POOL_MAX_SIZE: 'ten' },
      'Invalid environment variable `DB_POOL_MAX_SIZE`: expected an integer from 1 and up, got "ten" (string).',
    ],
    [
      'negative env override',
      {},
      { DB_STATEMENT_TIMEOUT_MS: '-5' },
      'Invalid environment variable `DB_STATEMENT_TIMEOUT_MS`: expected an integer from 0 and up, got "-5" (string).',
    ],
    [
      'zero acquire timeout from env',
      {},
      { DB_POOL_ACQUIRE_TIMEOUT_MS: '0' },
      'Invalid environment variable `DB_POOL_ACQUIRE_TIMEOUT_MS`: expected an integer from 1 and up, got "0" (string).',
    ],
    [
      'empty replica entry',
      {},
      { DB_REPLICA_URLS: `postgres://app:${PASSWORD}@r1:1/app,,postgres://app:${PASSWORD}@r2:2/app` },
      'Invalid environment variable `DB_REPLICA_URLS`: expected a comma-separated list of connection URLs with no empty entry, got "postgres://app:***@r1:1/app,,postgres://app:***@r2:2/app" (string). Entry 2 is empty.',
    ],
    [
      'bad replica URL from env',
      {},
      { DB_REPLICA_URLS: `postgres://app:${PASSWORD}@r1:1/app,http://r2` },
      'Invalid environment variable `DB_REPLICA_URLS` entry 2: expected a URL starting with postgres:// or postgresql://, got "http://r2" (string).',
    ],
    [
      'bad DB_PRIMARY_URL',
      {},
      { DB_PRIMARY_URL: `postgres://app:${PASSWORD}@[bad/app` },
      'Invalid environment variable `DB_PRIMARY_URL`: expected a postgres://user:password@host:port/database connection URL, got "postgres://app:***@[bad/app" (string). Special characters in the user name or password must be percent-encoded (@ as %40, # as %23, / as %2F, : as %3A, space as %20).',
    ],
    ['unknown DB_ENV', {}, { DB_ENV: 'staging' }, 'Invalid environment variable `DB_ENV`: expected one of "development", "production", "test", got "staging" (string).'],
    ['unknown preset', { preset: 'prod' }, {}, 'Invalid option `preset`: expected one of "development", "production", "test", got "prod" (string).'],
    ['non-numeric APP_INSTANCES', {}, { APP_INSTANCES: 'many' }, 'Invalid environment variable `APP_INSTANCES`: expected an integer from 1 and up, got "many" (string).'],
    [
      'leak threshold below 2000',
      { leakDetectionThresholdMs: 1000 },
      {},
      'Invalid option `leakDetectionThresholdMs`: expected 0 (off) or an integer from 2000 and up, got 1000 (number).',
    ],
    [
      'empty replica object',
      { replicas: [{}] },
      {},
      'Invalid option `replicas[0]`: expected a connection object such as { connectionString: "postgres://…" } or { host, port, user, database }, got an empty object {}.',
    ],
    [
      'replica given as a URL string',
      { replicas: [REPLICA_URL] },
      {},
      'Invalid option `replicas[0]`: expected a connection object such as { connectionString: "postgres://…" } or { host, port, user, database }, got "postgres://app:***@db-replica:5433/app" (string).',
    ],
    ['replicas not an array', { replicas: { connectionString: REPLICA_URL } }, {}, 'Invalid option `replicas`: expected an array of connection objects, got an object with keys connectionString.'],
    ['no primary', { primary: undefined }, {}, 'Invalid option `primary`: expected a connection object, or the DB_PRIMARY_URL environment variable, got undefined.'],
    ['port out of range', { primary: { host: 'h', port: 70000 } }, {}, 'Invalid option `primary.port`: expected an integer from 1 to 65535, got 70000 (number).'],
    ['weight 0', { replicas: [{ connectionString: REPLICA_URL, weight: 0 }] }, {}, 'Invalid option `replicas[0].weight`: expected a number greater than 0, got 0 (number).'],
    [
      'duplicate node name',
      { replicas: [{ connectionString: REPLICA_URL, name: 'primary' }] },
      {},
      'Invalid option `replicas[0].name`: expected a name no other node of this database uses, got "primary" (string).',
    ],
    ['password not a string', { primary: { host: 'h', password: 12345678 } }, {}, 'Invalid option `primary.password`: expected a string or a function returning one, got [redacted].'],
    [
      'lag interval too short',
      { routing: { lagCheckIntervalMs: 10 } },
      {},
      'Invalid option `routing.lagCheckIntervalMs`: expected an integer from 50 to 2147483647 (the longest delay a Node.js timer can wait, about 24.8 days), got 10 (number).',
    ],
    ['bad consistency', { routing: { consistency: 'strong' } }, {}, 'Invalid option `routing.consistency`: expected one of "read-your-writes", "eventual", got "strong" (string).'],
    ['bad lazy', { lazy: 'yes' }, {}, 'Invalid option `lazy`: expected true or false, got "yes" (string).'],
    ['bad onConnect', { onConnect: 'SET x' }, {}, 'Invalid option `onConnect`: expected a function (client, { database, pool, role }) => void | Promise<void>, got "SET x" (string).'],
    ['retryAttempts 0', { retryAttempts: 0 }, {}, 'Invalid option `retryAttempts`: expected an integer from 1 and up, got 0 (number).'],
    ['breaker not an object', { breaker: 'on' }, {}, 'Invalid option `breaker`: expected an object, got "on" (string).'],
    ['routing not an object', { routing: ['random'] }, {}, 'Invalid option `routing`: expected an object, got an array of 1.'],
    ['options not an object', { primary: 'ignored' }, {}, 'Invalid option `primary`: expected a connection object such as { connectionString: "postgres://…" } or { host, port, user, database }, got "ignored" (string).'],
    ['application name too long', { applicationName: 'x'.repeat(64) }, {}, `Invalid option \`applicationName\`: expected at most 63 bytes, got "${'x'.repeat(64)}" (string).`],
  ];

  it.each(cases)('%s', (_title, options, env, message) => {
    const error = configError(() => resolve(options, env));
    expect(error.message).toBe(message);
    expect(error.message).not.toContain(PASSWORD);
  });

  it('names the unknown key and suggests the closest known one', () => {
    const typo = configError(() => resolve({ maxx: 3 }));
    expect(typo.field).toBe('option `maxx`');
    expect(typo.message).toMatch(/^Invalid option `maxx`: expected one of the known options \(name, isGlobal, primary, replicas, .*\), got 3 \(number\)\. Did you mean `max`\?$/);
    expect(configError(() => resolve({ replica: [] })).message).toMatch(/got an array of 0\. Did you mean `replicas`\?$/);
    expect(configError(() => resolve({ statementTimeout: 5 })).message).toMatch(/Did you mean `statementTimeoutMs`\?$/);
    expect(configError(() => resolve({ routing: { stategy: 'random' } as never })).message).toMatch(/^Invalid option `routing\.stategy`: .* Did you mean `routing\.strategy`\?$/);
    expect(configError(() => resolve({ breaker: { treshold: 3 } as never })).message).toMatch(/^Invalid option `breaker\.treshold`: expected one of the known options \(failureThreshold, resetTimeoutMs\), got 3 \(number\)\.$/);
    expect(configError(() => resolve({ primary: { connectionString: PRIMARY_URL, hots: 'db' } as never })).message).toBe(
      'Invalid option `primary.hots`: expected a pg.PoolConfig field or one of name, weight, endpoint, min, max, acquireTimeoutMs, idleTimeoutMs, statementTimeoutMs, maxUses, maxLifetimeMs, validateIdleAfterMs, leakDetectionThresholdMs, keepAliveMs, connectTimeoutMs, queryTimeoutMs, validationTimeoutMs, got "db" (string). Did you mean `primary.host`?',
    );
  });

  it('never prints the value of an unknown key that looks like a secret', () => {
    const error = configError(() => resolve({ passwd: PASSWORD }));
    expect(error.message).toMatch(/^Invalid option `passwd`: .*, got \[redacted\]\.$/);
    const nodeError = configError(() => resolve({ primary: { host: 'h', pasword: PASSWORD } as never }));
    const guessed = configError(() => resolve({ primary: { host: 'h', passwrd: PASSWORD } as never }));
    expect(guessed.message).toMatch(/got \[redacted\]\. Did you mean `primary\.password`\?$/);
    expect(nodeError.message).toMatch(/got \[redacted\]\. Did you mean `primary\.password`\?$/);
    expect(error.message + nodeError.message).not.toContain(PASSWORD);
  });

  it('carries field, expected form and given value on the error', () => {
    const error = configError(() => resolve({}, { DB_POOL_MAX_SIZE: 'ten' }));
    expect(error).toMatchObject({
      name: 'PoolConfigurationError',
      field: 'environment variable `DB_POOL_MAX_SIZE`',
      expected: 'an integer from 1 and up',
      given: '"ten" (string)',
    });
  });

  it('rejects a node value even when an environment variable overrides it', () => {
    expect(configError(() => resolve({ primary: { connectionString: PRIMARY_URL, max: -2 } }, { DB_POOL_MAX_SIZE: '5' })).message).toBe(
      'Invalid option `primary.max`: expected an integer from 1 and up, got -2 (number).',
    );
  });
});

describe('resolveOptions: multi-host primary and failover', () => {
  const MULTI = `postgres://app:${PASSWORD}@db-a:5432,db-b,[::1]:5434/app?target_session_attrs=read-write&sslmode=disable`;

  it('expands a libpq multi-host URL into one node per host (host names kept: resolved on every connect)', () => {
    const resolved = resolve({ primary: { connectionString: MULTI, max: 7 }, replicas: [{ connectionString: REPLICA_URL }] });
    expect([resolved.primary, ...resolved.replicas].map((n) => [n.name, n.role, n.address, n.max])).toEqual([
      ['primary', 'primary', 'db-a:5432', 7],
      ['replica-1', 'replica', 'db-replica:5433', expect.any(Number)],
      ['primary-2', 'replica', 'db-b:5432', 7],
      ['primary-3', 'replica', '[::1]:5434', 7],
    ]);
    expect(resolved.primary.poolConfig.connectionString).toBe(`postgres://app:${PASSWORD}@db-a:5432/app?sslmode=disable`);
    expect(resolved.secrets).toEqual([PASSWORD, PASSWORD, PASSWORD, PASSWORD]);
  });

  it('accepts the list form and DB_PRIMARY_URL with several hosts', () => {
    const listed = resolve({ primary: [{ connectionString: PRIMARY_URL }, { connectionString: REPLICA_URL, name: 'standby' }] });
    expect([listed.primary.name, ...listed.replicas.map((r) => r.name)]).toEqual(['primary', 'standby']);
    const fromEnv = resolve({}, { DB_PRIMARY_URL: MULTI });
    expect(fromEnv.replicas.map((r) => r.address)).toEqual(['db-b:5432', '[::1]:5434']);
  });

  it('rejects a target_session_attrs that is not for the primary, an empty host and pinned roles with several hosts', () => {
    expect(configError(() => resolve({ primary: { connectionString: MULTI.replace('read-write', 'standby') } })).message).toBe(
      'Invalid option `primary.connectionString`: expected target_session_attrs "any", "read-write", "primary" (the primary takes the writes; replicas are listed in replicas), got "standby" (string).',
    );
    expect(configError(() => resolve({ primary: { connectionString: `postgres://app@db-a,,db-c/app` } })).message).toContain('host 2 of the multi-host URL');
    expect(configError(() => resolve({ primary: { connectionString: MULTI }, failover: { discoverRoles: false } })).field).toBe('option `failover.discoverRoles`');
  });

  it('validates failover options and applies the defaults', () => {
    expect(resolve({}).failover).toEqual({ discoverRoles: true, checkIntervalMs: 1000, checkTimeoutMs: 1000, failoverTimeoutMs: 30_000, holdWritesMs: 5000 });
    expect(resolve({ failover: { holdWritesMs: 0 } }).failover.holdWritesMs).toBe(0);
    expect(configError(() => resolve({ failover: { holdWritesMs: -1 } })).message).toContain('failover.holdWritesMs');
    expect(configError(() => resolve({ failover: { checkIntervalMs: 10 } })).message).toContain('failover.checkIntervalMs');
    expect(configError(() => resolve({ failover: { discoverRole: true } as never })).message).toContain('failover.discoverRole');
  });
});

describe('resolveOptions: shapes', () => {
  const shapes: Array<[string, Record<string, unknown>, string, string]> = [
    // eslint-disable-next-line no-sparse-arrays
    ['a hole in replicas', { replicas: [, { connectionString: REPLICA_URL }] }, 'option `replicas[0]`', 'undefined'],
    // eslint-disable-next-line no-sparse-arrays
    ['a hole in a primary list', { primary: [{ connectionString: PRIMARY_URL }, , { connectionString: REPLICA_URL }] }, 'option `primary[1]`', 'undefined'],
    ['name an object', { name: {} }, 'option `name`', 'an empty object'],
    ['name a number', { name: 42 }, 'option `name`', '42 (number)'],
    ['name false', { name: false }, 'option `name`', 'false (boolean)'],
    ['routing a number', { routing: 42 }, 'option `routing`', '42 (number)'],
    ['routing null', { routing: null }, 'option `routing`', 'null'],
    ['monitor null', { monitor: null }, 'option `monitor`', 'null'],
    ['breaker null', { breaker: null }, 'option `breaker`', 'null'],
    ['failover null', { failover: null }, 'option `failover`', 'null'],
    ['ssl a string', { primary: { connectionString: PRIMARY_URL, ssl: 'yes' } }, 'option `primary.ssl`', '"yes" (string)'],
    ['ssl null', { replicas: [{ connectionString: REPLICA_URL, ssl: null }] }, 'option `replicas[0].ssl`', 'null'],
    ['isGlobal a number', { isGlobal: 1e308 }, 'option `isGlobal`', '1e+308 (number)'],
    ['env a string', { env: 'x' }, 'option `env`', '"x" (string)'],
    ['consistencyHeader with a space', { routing: { consistencyHeader: 'bad header' } }, 'option `routing.consistencyHeader`', '"bad header" (string)'],
    ['consistencyHeader with a colon', { routing: { consistencyHeader: 'x-lsn:' } }, 'option `routing.consistencyHeader`', '"x-lsn:" (string)'],
  ];

  it.each(shapes)('%s: one error naming the field, what was expected and what was given', (_title, options, field, given) => {
    const { env, ...rest } = options;
    const error = configError(() => resolveOptions({ primary: { connectionString: PRIMARY_URL }, env: {}, ...rest, ...(env === undefined ? {} : { env }) } as PoolModuleRootOptions));
    expect(error.field).toBe(field);
    expect(error.given).toContain(given);
    expect(error.message).toMatch(/^Invalid option `[^`]+`: expected .+, got .+/);
    expect(error.message).not.toContain(PASSWORD);
  });

  it('accepts the shapes pg takes: ssl true/false/object, a header token, isGlobal false', () => {
    const resolved = resolve({ isGlobal: false, primary: { connectionString: PRIMARY_URL, ssl: { rejectUnauthorized: false } }, replicas: [{ connectionString: REPLICA_URL, ssl: true }], routing: { consistencyHeader: "X-Consistency_Token.1!#$%&'*+^`|~" } });
    expect(resolved.routing.consistencyHeader).toBe("x-consistency_token.1!#$%&'*+^`|~");
  });

  it('checks name and isGlobal of forRoot before any provider exists', () => {
    expect(resolveModuleIdentity(undefined)).toEqual({ name: 'default', global: true });
    expect(resolveModuleIdentity({ name: 'analytics', isGlobal: false })).toEqual({ name: 'analytics', global: false });
    expect(configError(() => resolveModuleIdentity({ name: {} })).field).toBe('option `name`');
    expect(configError(() => resolveModuleIdentity({ isGlobal: 'yes' })).field).toBe('option `isGlobal`');
  });
});
