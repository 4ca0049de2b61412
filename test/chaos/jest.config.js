// `npm run chaos`: runs the chaos driver (test/chaos/chaos.run.ts) with the e2e project's
// TypeScript/ESM setup, in band, against the cluster selected by PGPOOLS_CLUSTER_OFFSET.
import e2e from '../../jest.config.js';

const base = e2e.projects.find((p) => p.displayName === 'e2e');

export default {
  ...base,
  rootDir: '../..',
  displayName: 'chaos',
  testMatch: ['<rootDir>/test/chaos/**/*.run.ts'],
  globalSetup: undefined,
  slowTestThreshold: 600,
};
