import { describe, expect, it } from 'vitest';
import { openProducer } from '../../lib/producer.js';
import { openQueue } from '../../lib/queue.js';
import { RunStore } from '../../shared/run/run-store.js';
import { redisUrl } from '../helpers/redis.js';
import { useTestQueue } from '../helpers/test-queue.js';

/** openQueue, the library's handle on a queue's runs (what `conveyor status --list` and `cancel` use). */
describe('openQueue', () => {
  const ctx = useTestQueue();

  it('lists the latest runs newest first, as status prints them, up to the limit', async () => {
    const queue = openQueue({ redisUrl: redisUrl(), queue: ctx.queue });
    ctx.cleanups.push(() => queue.close());
    expect(await queue.runs()).toEqual([]);
    expect(await queue.latestRunId()).toBeNull();
    for (const runId of ['a', 'b', 'c']) {
      const producer = await openProducer({ redisUrl: redisUrl(), queue: ctx.queue, runId });
      await producer.done();
      // The run index is ordered by creation time in ms: keep the three creations apart.
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    const runs = await queue.runs();
    expect(runs.map((s) => [s.runId, s.join.state])).toEqual([
      ['c', 'joined'],
      ['b', 'joined'],
      ['a', 'joined'],
    ]);
    expect((await queue.runs({ limit: 2 })).map((s) => s.runId)).toEqual(['c', 'b']);
    expect(await queue.latestRunId()).toBe('c');
  });

  it("opens a run with the shard count it was created with, on the queue's connection; null for none", async () => {
    await new RunStore(ctx.redis, ctx.queue, 'sharded', 3).create(1);
    const queue = openQueue({ redis: ctx.redis, queue: ctx.queue });
    expect(await queue.run('missing')).toBeNull();
    await expect(queue.run('not a run id')).rejects.toThrow(/runId: "not a run id" must be/);
    const run = await queue.run('sharded');
    expect(run?.runId).toBe('sharded');
    expect((await run?.status())?.shards).toHaveLength(3);
    const cancelled = await run?.cancel({ by: 'a test', reason: 'checking' });
    expect(cancelled?.outcome).toBe('cancelled');
    const status = await run?.status();
    expect([status?.join.cancelledBy, status?.join.cancelReason]).toEqual(['a test', 'checking']);
    // Its handles borrow the connection: closing them leaves it open.
    await run?.close();
    await queue.close();
    expect(ctx.redis.status).toBe('ready');
  });
});
