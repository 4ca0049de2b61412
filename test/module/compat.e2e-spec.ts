import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { Controller, Get, Injectable, Module, type INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import request from 'supertest';
import { DatabaseService, InjectDatabase, PoolModule, ReadOnly } from 'nestjs-pg-pools';
import { clusterConfig, type PgNodeName } from '../support/cluster.js';
import { CapturingLogger } from '../support/logger.js';
import { sessionCounts as sessionCountsOf } from '../support/sessions.js';

// Runs in both runs of the suite: `npm run test:e2e` (NestJS 12, the root node_modules) and
// `npm run test:nest11` (NEST_COMPAT=11: jest.config.js maps @nestjs/* to test/nest11/node_modules).
// It proves which NestJS actually runs, that the framework, the library and rxjs share one
// instance each, and that the module serves a replica read on it.

const APPLICATION_NAME = 'compat-e2e';
const expectedMajor = process.env.NEST_COMPAT ?? '12';
const repoRoot = process.cwd();
const nest11Modules = path.join(repoRoot, 'test', 'nest11', 'node_modules');
const rootModules = path.join(repoRoot, 'node_modules');
const requireHere = createRequire(import.meta.url);
const requireFromLib = createRequire(path.join(repoRoot, 'lib', 'index.ts'));

interface ServerAnswer {
  port: number;
  in_recovery: boolean;
}
const whoAnswers = 'SELECT inet_server_port() AS port, pg_is_in_recovery() AS in_recovery';

/** This file's server sessions on each PostgreSQL node. */
function sessionCounts(): Promise<Record<PgNodeName, number>> {
  return sessionCountsOf(APPLICATION_NAME, { clientBackendsOnly: true });
}

async function waitForNoSessions(timeoutMs: number): Promise<Record<PgNodeName, number>> {
  const deadline = Date.now() + timeoutMs;
  let counts = await sessionCounts();
  while (Object.values(counts).some((n) => n > 0) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100).unref());
    counts = await sessionCounts();
  }
  return counts;
}

@Injectable()
class ServerProbe {
  constructor(@InjectDatabase() private readonly db: DatabaseService) {}

  async answer(): Promise<ServerAnswer> {
    return (await this.db.query<ServerAnswer>(whoAnswers)).rows[0]!;
  }
}

@Controller('compat')
class CompatController {
  constructor(private readonly probe: ServerProbe) {}

  @Get('read')
  @ReadOnly()
  read(): Promise<ServerAnswer> {
    return this.probe.answer();
  }

  @Get('write-side')
  writeSide(): Promise<ServerAnswer> {
    return this.probe.answer();
  }
}

@Module({
  imports: [
    PoolModule.forRoot({
      primary: { ...clusterConfig.primary },
      replicas: [{ ...clusterConfig.replica1 }, { ...clusterConfig.replica2 }],
      preset: 'test',
      min: 1,
      max: 2,
      applicationName: APPLICATION_NAME,
      // Far more pools than the servers allow, so the sizing advisor warns through the library's Logger.
      instances: 1000,
    }),
  ],
  controllers: [CompatController],
  providers: [ServerProbe],
})
class CompatModule {}

/** Version of the copy of `name` that an import from this file loads (some packages do not export package.json). */
function packageVersion(name: string): string {
  let dir = path.dirname(requireHere.resolve(name));
  for (let depth = 0; depth < 5; depth++, dir = path.dirname(dir)) {
    const file = path.join(dir, 'package.json');
    if (!existsSync(file)) continue;
    const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: string; version: string };
    if (pkg.name === name) return pkg.version;
  }
  throw new Error(`Cannot find the package.json of ${name} above ${requireHere.resolve(name)}.`);
}

describe(`NestJS ${expectedMajor} compatibility`, () => {
  it(`runs @nestjs/* ${expectedMajor}.x from ${expectedMajor === '11' ? 'test/nest11' : 'the root'} node_modules`, () => {
    for (const name of ['@nestjs/core', '@nestjs/common', '@nestjs/testing', '@nestjs/platform-express', '@nestjs/terminus']) {
      expect(`${name}@${packageVersion(name).split('.')[0]}`).toBe(`${name}@${expectedMajor}`);
    }
    const coreEntry = requireHere.resolve('@nestjs/core');
    expect(coreEntry.startsWith(expectedMajor === '11' ? nest11Modules : rootModules)).toBe(true);
  });

  it('shares one @nestjs/common and one rxjs between the framework, the library and the test', () => {
    const requireFromCore = createRequire(requireHere.resolve('@nestjs/core'));
    expect(requireFromLib.resolve('@nestjs/common')).toBe(requireHere.resolve('@nestjs/common'));
    expect(requireFromCore.resolve('@nestjs/common')).toBe(requireHere.resolve('@nestjs/common'));
    const rxjs = requireHere.resolve('rxjs');
    expect(rxjs.startsWith(rootModules + path.sep)).toBe(true);
    expect(requireFromCore.resolve('rxjs')).toBe(rxjs);
    expect(requireFromLib.resolve('rxjs')).toBe(rxjs);
  });

  describe('PoolModule on this NestJS', () => {
    let app: INestApplication | undefined;
    const logger = new CapturingLogger();

    beforeAll(async () => {
      const moduleRef = await Test.createTestingModule({ imports: [CompatModule] })
        .setLogger(logger)
        .compile();
      app = moduleRef.createNestApplication({ logger });
      await app.init();
    }, 30_000);

    afterAll(async () => {
      await app?.close();
    });

    it("routes the library's Logger to the application's logger (one @nestjs/common instance)", () => {
      expect(logger.warnings().join('\n')).toMatch(/Pool sizing: .* × 1000 instance\(s\)/);
    });

    it('answers a @ReadOnly() request from a streaming replica and a plain request from the primary', async () => {
      const replicaPorts = [clusterConfig.ports.replica1, clusterConfig.ports.replica2];

      const read = await request(app!.getHttpServer()).get('/compat/read').expect(200);
      expect(read.body.in_recovery).toBe(true);
      expect(replicaPorts).toContain(read.body.port);

      const write = await request(app!.getHttpServer()).get('/compat/write-side').expect(200);
      expect(write.body).toEqual({ port: clusterConfig.ports.primary, in_recovery: false });

      const direct = await app!.get(DatabaseService).replica.query<ServerAnswer>(whoAnswers);
      expect(direct.rows[0]!.in_recovery).toBe(true);
    }, 15_000);

    it('leaves no server session behind once the application is closed', async () => {
      const before = await sessionCounts();
      expect(before.primary).toBeGreaterThanOrEqual(1);
      expect(before.replica1 + before.replica2).toBeGreaterThanOrEqual(1);

      await app!.close();
      app = undefined;
      expect(await waitForNoSessions(5000)).toEqual({ primary: 0, replica1: 0, replica2: 0 });
    }, 15_000);
  });
});
