// Jest runs in native ESM mode (node --experimental-vm-modules) because the NestJS 12 packages
// are ESM-only. NEST_COMPAT=11 maps every @nestjs/* import to test/nest11/node_modules so the
// same e2e suite also runs against NestJS 11 (see scripts/nest11.sh). rxjs, reflect-metadata and pg
// are not installed there, so the NestJS 11 packages resolve the root copies: one instance of each
// (test/module/compat.e2e-spec.ts checks it).
import { createDefaultEsmPreset } from 'ts-jest';

const preset = createDefaultEsmPreset({ tsconfig: '<rootDir>/tsconfig.spec.json' });

const moduleNameMapper = {
  '^nestjs-pg-pools$': '<rootDir>/lib/index.ts',
  '^(\\.{1,2}/.*)\\.js$': '$1',
};
if (process.env.NEST_COMPAT === '11') {
  moduleNameMapper['^@nestjs/(common|core|testing|platform-express|platform-fastify|terminus|config)(/.*)?$'] =
    '<rootDir>/test/nest11/node_modules/@nestjs/$1$2';
}

const common = {
  ...preset,
  moduleNameMapper,
  extensionsToTreatAsEsm: ['.ts'],
  testEnvironment: 'node',
};

export default {
  projects: [
    // test/*.spec.ts: checks of the repository's files (docs, generated figures) that need no cluster.
    { ...common, displayName: 'unit', testMatch: ['<rootDir>/lib/**/*.spec.ts', '<rootDir>/test/*.spec.ts'] },
    {
      ...common,
      displayName: 'e2e',
      testMatch: ['<rootDir>/test/**/*.e2e-spec.ts'],
      globalSetup: '<rootDir>/test/support/global-setup.ts',
      slowTestThreshold: 30,
    },
  ],
};
