import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { inject } from 'vitest';
import { queuePrefix } from '../../shared/keys.js';

export const redisUrl = (): string => inject('redisUrl');

/** The redis-server binary, for a test that starts (and kills, pauses...) a Redis of its own. */
export function redisServerBinary(): string {
  const binary = inject('redisServerBinary');
  if (!binary)
    throw new Error('this test starts its own redis-server: install one (apt-get install redis-server)');
  return binary;
}

/** A fresh queue name per test, so tests never see each other's keys. */
export function testQueue(): string {
  return `test-${randomUUID().slice(0, 8)}`;
}

export function connect(url = redisUrl()): Redis {
  return new Redis(url, { maxRetriesPerRequest: null, lazyConnect: false });
}

/**
 * Deletes every key of a queue: BullMQ's and conveyor's share the queue's hash tag `{<queue>}`, and
 * a sharded queue's shards live under `{<queue>#<i>.<salt>}`.
 */
export async function dropQueue(redis: Redis, queue: string): Promise<void> {
  for (const pattern of [`${queuePrefix(queue)}:*`, `{${queue}#*`]) {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      cursor = next;
      if (keys.length) await redis.del(...keys);
    } while (cursor !== '0');
  }
}

/** Polls `check` until it returns a non-undefined value, or fails naming what it waited for. */
export async function pollUntil<T>(
  what: string,
  check: () => Promise<T | undefined>,
  timeoutMs = 30_000,
  everyMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline)
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${last instanceof Error ? `: ${last.message}` : ''}`,
      );
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
