import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    globals: false,
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/helpers/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Real processes share two cores: run files one at a time so timing-sensitive e2e tests stay honest.
    fileParallelism: false,
    pool: 'forks',
  },
});
