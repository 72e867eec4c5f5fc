import { expect } from 'vitest';
import { projectRoot } from '../../shared/roles.js';
import { exitOf, spawnTracked } from './processes.js';

/** Fast protocol timings so crash recovery happens in seconds, not the production half-minute. */
export const FAST = {
  HEARTBEAT_MS: '200',
  LEASE_MS: '3000',
  LOCK_MS: '2000',
  STALLED_INTERVAL_MS: '1000',
  KEEP_COMPLETED: '100000',
};

/** Runs `npm start` (the demo) with `env`, expects exit 0, and returns what it printed on stdout. */
export async function runDemo(env: Record<string, string>, timeoutMs = 60_000): Promise<string> {
  const demo = spawnTracked(
    'demo',
    process.execPath,
    ['--import', 'tsx', `${projectRoot}/scripts/demo/main.ts`],
    {
      ...FAST,
      ...env,
    },
  );
  expect((await exitOf(demo, timeoutMs)).code, demo.output()).toBe(0);
  return demo.stdout();
}
