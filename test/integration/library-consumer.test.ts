import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { startConsumer } from '../../lib/consumer.js';
import { openProducer } from '../../lib/producer.js';
import { defineJob } from '../../shared/jobs/define.js';
import { EvictionPolicyError } from '../../shared/redis-policy.js';
import { startRedisServer } from '../../shared/redis-server.js';
import { pollUntil, redisServerBinary, redisUrl } from '../helpers/redis.js';
import { useTestQueue } from '../helpers/test-queue.js';

/** startConsumer, the library's consumer: the same start-up checks as the command. */
describe('startConsumer', () => {
  const ctx = useTestQueue();

  it('resolves runId "auto" to the queue\'s open run and exits once that run joins', async () => {
    const where = { redisUrl: redisUrl(), queue: ctx.queue, heartbeatMs: 100, leaseMs: 3_000 };
    const consumer = await startConsumer({ ...where, runId: 'auto' });
    ctx.cleanups.push(() => consumer.stop('test over'));
    expect(consumer.runId).toMatch(/^run-\d+$/);
    const producer = await openProducer({ ...where, runId: 'auto' });
    expect(producer.runId).toBe(consumer.runId);
    await producer.put('sleep', { value: 1, ms: 0 });
    await producer.done();
    expect((await consumer.exited).state).toBe('cancelled');
  });

  it('refuses a Redis that may evict keys, saying how to fix it', async () => {
    const server = await startRedisServer({
      binary: redisServerBinary(),
      args: ['--maxmemory-policy', 'allkeys-lru'],
    });
    ctx.cleanups.push(() => server.stop());
    const err = await startConsumer({ redisUrl: server.url, queue: ctx.queue, runId: 'r' }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(EvictionPolicyError);
    expect((err as Error).message).toContain('maxmemory-policy noeviction');
  });

  it(
    'leaves, disposing its job resources, when Redis stops answering during stop()',
    { timeout: 120_000 },
    async () => {
      const server = await startRedisServer({ binary: redisServerBinary() });
      const pid = server.process.pid!;
      ctx.cleanups.push(async () => {
        process.kill(pid, 'SIGCONT');
        await server.stop();
      });
      let ran = false;
      let disposed = false;
      const held = defineJob({
        name: 'held',
        schema: z.object({}),
        createResources: () => ({}),
        disposeResources: () => void (disposed = true),
        handler: () => Promise.resolve((ran = true)),
      });
      const where = {
        redisUrl: server.url,
        queue: ctx.queue,
        runId: 'r',
        jobs: [held],
        heartbeatMs: 100,
        leaseMs: 3_000,
      };
      const consumer = await startConsumer(where);
      const producer = await openProducer({ ...where, producers: 2 });
      await producer.put('held', {});
      await pollUntil('the job to run', () => Promise.resolve(ran || undefined));
      await producer.close();
      // Paused: connections stay open and every command waits for a reply that does not come.
      process.kill(pid, 'SIGSTOP');
      const exit = await consumer.stop('test over');
      expect(exit.state).toBe('stopped');
      expect(disposed).toBe(true);
    },
  );
});
