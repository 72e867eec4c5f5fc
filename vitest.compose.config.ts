import { defineConfig } from 'vitest/config';

/**
 * `npm run test:compose`: the real stack under a real Docker engine (test/compose-engine). Kept out
 * of `npm test`, which checks the compose files without an engine.
 */
export default defineConfig({
  test: {
    globals: false,
    include: ['test/compose-engine/**/*.test.ts'],
    globalSetup: ['test/compose-engine/global-setup.ts'],
    testTimeout: 300_000,
    hookTimeout: 120_000,
    fileParallelism: false,
    pool: 'forks',
  },
});
