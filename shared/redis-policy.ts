import type { RedisClient } from './redis.js';

/** Thrown when Redis may delete keys on its own under memory pressure (queued jobs among them). */
export class EvictionPolicyError extends Error {
  constructor(readonly policy: string) {
    super(
      `Redis uses maxmemory-policy "${policy}", which lets it delete queued jobs when memory runs out. ` +
        'Conveyor needs "noeviction" (full memory then rejects new jobs with an error instead of losing accepted ones): ' +
        'set `maxmemory-policy noeviction` in redis.conf or with CONFIG SET, or point REDIS_URL at another Redis.',
    );
    this.name = 'EvictionPolicyError';
  }
}

/**
 * Reads Redis's eviction policy. INFO first: it works for a user restricted to conveyor's ACL and on
 * managed Redis that disables CONFIG; CONFIG GET as a fallback. Null when neither tells.
 */
export async function readEvictionPolicy(redis: RedisClient): Promise<string | null> {
  const info = await redis.info('memory').catch(() => '');
  const match = /^maxmemory_policy:(\S+)/m.exec(info);
  if (match?.[1]) return match[1];
  try {
    const reply = await redis.config('GET', 'maxmemory-policy');
    return reply[1] ?? null;
  } catch {
    return null;
  }
}

/** Start-up check for producers and consumers: throws EvictionPolicyError unless the policy is noeviction. */
export async function assertNoEviction(redis: RedisClient): Promise<void> {
  const policy = await readEvictionPolicy(redis);
  if (policy !== null && policy !== 'noeviction') throw new EvictionPolicyError(policy);
}
