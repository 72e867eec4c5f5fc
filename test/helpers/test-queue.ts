import type { Redis } from 'ioredis';
import { afterEach, beforeEach } from 'vitest';
import { connect, testQueue } from './redis.js';
import { releaseTestQueue } from './teardown.js';

/** What one test owns: its own connection and a fresh queue, released after it. */
export type TestQueue = {
  readonly redis: Redis;
  readonly queue: string;
  /** Run newest first after the test, before leftover processes are killed and the queue dropped. */
  readonly cleanups: (() => Promise<unknown>)[];
};

/**
 * The frame of tests that each own a queue: registers a beforeEach that connects and picks a fresh
 * queue, and an afterEach that releases it (releaseTestQueue). The fields of the returned object are
 * the current test's. Call it before any hook that reads them: beforeEach hooks run in the order they
 * were registered, afterEach hooks in reverse.
 */
export function useTestQueue(): TestQueue {
  let current: { redis: Redis; queue: string } | undefined;
  const cleanups: (() => Promise<unknown>)[] = [];
  const now = (): { redis: Redis; queue: string } => {
    if (!current) throw new Error('useTestQueue: its redis and queue exist only inside a test or its hooks');
    return current;
  };
  beforeEach(() => {
    current = { redis: connect(), queue: testQueue() };
  });
  afterEach(() => releaseTestQueue(now().redis, now().queue, cleanups));
  return {
    get redis() {
      return now().redis;
    },
    get queue() {
      return now().queue;
    },
    cleanups,
  };
}
