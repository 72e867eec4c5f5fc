import type { Redis } from 'ioredis';
import { expect } from 'vitest';
import { killLeftovers } from './processes.js';
import { dropQueue } from './redis.js';

/**
 * The afterEach of a test that owns a queue: its own cleanups (newest first), then any process it
 * left running is killed, the queue's keys dropped and the connection closed; a leaked process fails
 * the test only after all of that, so the next test starts clean either way.
 */
export async function releaseTestQueue(
  redis: Redis,
  queue: string,
  cleanups: (() => Promise<unknown>)[] = [],
): Promise<void> {
  for (const c of cleanups.splice(0).reverse()) await c();
  const leaked = await killLeftovers();
  await dropQueue(redis, queue);
  redis.disconnect();
  expect(leaked, 'processes left running by the test').toEqual([]);
}
