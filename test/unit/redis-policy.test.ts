import { describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { assertNoEviction, EvictionPolicyError, readEvictionPolicy } from '../../shared/redis-policy.js';

const fake = (info: string, config?: string[] | Error) =>
  ({
    info: () => Promise.resolve(info),
    config: () => (config instanceof Error ? Promise.reject(config) : Promise.resolve(config ?? [])),
  }) as unknown as Redis;

describe('eviction policy check', () => {
  it('reads the policy from INFO memory', async () => {
    expect(
      await readEvictionPolicy(fake('# Memory\r\nused_memory:1\r\nmaxmemory_policy:allkeys-lru\r\n')),
    ).toBe('allkeys-lru');
  });

  it('falls back to CONFIG GET, and to null when neither answers', async () => {
    expect(await readEvictionPolicy(fake('', ['maxmemory-policy', 'volatile-ttl']))).toBe('volatile-ttl');
    expect(await readEvictionPolicy(fake('', new Error('NOPERM')))).toBeNull();
  });

  it('accepts noeviction and refuses an evicting policy with a message that says what to do', async () => {
    await expect(assertNoEviction(fake('maxmemory_policy:noeviction\r\n'))).resolves.toBeUndefined();
    const err = await assertNoEviction(fake('maxmemory_policy:allkeys-lru\r\n')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EvictionPolicyError);
    expect((err as Error).message).toMatch(/"allkeys-lru".*needs "noeviction".*maxmemory-policy noeviction/s);
  });
});
