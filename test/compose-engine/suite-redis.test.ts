import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { findRedisServer } from '../../shared/redis-server.js';
import { suiteRedis, type SuiteRedis } from '../helpers/suite-redis.js';

/**
 * The unit suite's Redis choice (test/helpers/global-setup.ts) against a real Docker engine that
 * cannot pull: this suite's engine reaches no registry for an image it does not hold.
 */
describe('the test suite’s Redis when a Docker engine answers but the container cannot start', () => {
  let chosen: SuiteRedis | undefined;
  afterEach(async () => {
    await chosen?.stop();
    chosen = undefined;
  });

  it('falls back to a private redis-server and says why', async () => {
    // testcontainers reads the engine's address from the process environment.
    Object.assign(process.env, inject('dockerEnv'));
    const env = { ...process.env, REDIS_URL: '' };
    chosen = await suiteRedis({ env, image: 'conveyor-test/not-in-any-registry:0' });
    expect(chosen.source).toBe('redis-server');
    expect(chosen.description).toMatch(/a Docker engine answers but the container did not start/);
    expect(chosen.description).toContain(findRedisServer(process.env.PATH ?? '') ?? 'redis-server');
    const client = new Redis(chosen.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    await client.connect();
    expect(await client.ping()).toBe('PONG');
    client.disconnect();
  });
});
