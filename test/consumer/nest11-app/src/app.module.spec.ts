import { Test, TestingModule } from '@nestjs/testing';
import { DatabaseService } from 'nestjs-pg-pools';
import { AppModule, WhoAnswers } from './app.module';

describe('nestjs-pg-pools in a CommonJS NestJS 11 app under Jest', () => {
  let moduleRef: TestingModule;

  beforeAll(async () => {
    moduleRef = await Test.createTestingModule({ imports: [AppModule] }).compile();
    await moduleRef.init();
  });

  afterAll(async () => {
    await moduleRef?.close();
  });

  it('loads the CommonJS build (no --experimental-vm-modules, no transform of node_modules)', () => {
    expect(typeof require).toBe('function');
    expect(require.resolve('nestjs-pg-pools')).toMatch(/node_modules\/nestjs-pg-pools\/dist\/cjs\/index\.js$/);
  });

  it('injects the one DatabaseService the module registered', () => {
    const db = moduleRef.get(DatabaseService);
    expect(db).toBeInstanceOf(DatabaseService);
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    expect(require('nestjs-pg-pools').DatabaseService).toBe(DatabaseService);
  });

  it('reads on the replica and writes on the primary of the real cluster', async () => {
    const who = moduleRef.get(WhoAnswers);
    await expect(who.onReplica()).resolves.toEqual({ port: Number(process.env.PG_REPLICA1_PORT), in_recovery: true });
    await expect(who.onPrimary()).resolves.toEqual({ port: Number(process.env.PG_PRIMARY_PORT), in_recovery: false });
  });
});
