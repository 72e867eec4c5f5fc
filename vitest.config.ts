import { configDefaults, defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    globals: false,
    include: ['test/**/*.test.ts'],
    // The real Docker stack runs on its own: `npm run test:compose` (vitest.compose.config.ts).
    exclude: [...configDefaults.exclude, 'test/compose-engine/**'],
    globalSetup: ['test/helpers/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Real processes share two cores: run files one at a time so timing-sensitive e2e tests stay honest.
    fileParallelism: false,
    pool: 'forks',
  },
});
