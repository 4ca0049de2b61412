// `npm run chaos:patroni`: the Patroni chaos suite (test/chaos/patroni.chaos.ts) with the e2e
// project's TypeScript/ESM setup, in band, against the cluster of scripts/patroni.sh.
import e2e from '../../jest.config.js';

const base = e2e.projects.find((p) => p.displayName === 'e2e');

export default {
  ...base,
  rootDir: '../..',
  displayName: 'chaos-patroni',
  testMatch: ['<rootDir>/test/chaos/patroni.chaos.ts'],
  globalSetup: undefined,
  slowTestThreshold: 600,
};
