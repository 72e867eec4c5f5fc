import { afterEach, describe, expect, it } from 'vitest';
import { freePort, startRedisServer, type RedisServerHandle } from '../../shared/redis-server.js';
import { FAST } from '../helpers/demo.js';
import { exitOf, killLeftovers, spawnRole, type Spawned } from '../helpers/processes.js';
import { redisServerBinary, testQueue } from '../helpers/redis.js';

const count = (p: Spawned, msg: string) =>
  p
    .output()
    .split('\n')
    .filter((l) => l.includes(`"msg":"${msg}"`)).length;

/** Processes and a Redis that is not there, or goes away and comes back. */
describe('without Redis', () => {
  let server: RedisServerHandle | undefined;
  afterEach(async () => {
    const leaked = await killLeftovers();
    await server?.stop();
    server = undefined;
    expect(leaked).toEqual([]);
  });

  it('a producer and a consumer waiting for Redis stop at once on SIGINT, exit 0, and say the wait once', async () => {
    const port = await freePort();
    const env = { ...FAST, REDIS_URL: `redis://127.0.0.1:${port}`, QUEUE: testQueue(), RUN_ID: 'r' };
    for (const role of ['producer', 'consumer'] as const) {
      const p = spawnRole(role, env);
      await p.waitFor('waiting for Redis');
      // Long enough for several retries (they back off from 200 ms).
      await new Promise((r) => setTimeout(r, 1_500));
      p.child.kill('SIGINT');
      // Before: 15 s (SHUTDOWN_GRACE_MS + 5 s), then "graceful stop took too long" and exit 1.
      expect((await exitOf(p, 8_000)).code, p.output()).toBe(0);
      expect(p.output()).toContain('stopped before start-up finished');
      expect(p.output()).not.toContain('took too long');
      expect(count(p, 'waiting for Redis')).toBe(1);
      expect(count(p, 'queue error')).toBe(0);
    }
  }, 60_000);

  it('a consumer says once that Redis went away and once that it is back', async () => {
    const binary = redisServerBinary();
    const port = await freePort();
    server = await startRedisServer({ binary, port });
    const consumer = spawnRole('consumer', { ...FAST, REDIS_URL: server.url, QUEUE: testQueue() });
    await consumer.waitFor('consumer ready');
    await server.stop();
    await consumer.waitFor('Redis unreachable: waiting for it');
    // A few retries while it is away.
    await new Promise((r) => setTimeout(r, 2_000));
    server = await startRedisServer({ binary, port });
    await consumer.waitFor('Redis is reachable again', 20_000);
    expect(count(consumer, 'Redis unreachable: waiting for it')).toBe(1);
    expect(count(consumer, 'Redis is reachable again')).toBe(1);
    expect(consumer.output()).toMatch(/"downMs":\d+,"retries":[1-9]\d*,.*"msg":"Redis is reachable again"/);
    consumer.child.kill('SIGTERM');
    expect((await exitOf(consumer)).code, consumer.output()).toBe(0);
  }, 60_000);
});
