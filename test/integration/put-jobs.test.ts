import type { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { bullKeyPrefix } from '../../shared/keys.js';
import { jobOptions, openQueue } from '../../shared/queue.js';
import { RunStore } from '../../shared/run/run-store.js';
import { readRunStatus } from '../../shared/run/status.js';
import { dropQueue } from '../helpers/redis.js';
import { useTestQueue } from '../helpers/test-queue.js';

const opts = jobOptions({ attempts: 3, backoffMs: 1_000, keepCompleted: 10, keepFailed: 100 });
const data = (i: number) => ({ run: 'r', producer: 'p1', payload: { value: i, ms: 0 } });

/** What BullMQ holds for a queue, with what differs by the clock (times, stream ids) left out. */
async function bullState(redis: Redis, queue: string, ids: string[]) {
  const at = bullKeyPrefix(queue);
  const jobs = await Promise.all(
    ids.map(async (id) => {
      const { timestamp, opts: stored, ...rest } = await redis.hgetall(at + id);
      return { ...rest, opts: JSON.parse(stored!) as unknown, hasTimestamp: Number(timestamp) > 0 };
    }),
  );
  const events = (await redis.xrange(at + 'events', '-', '+')).map(([, fields]) => fields);
  return {
    jobs,
    events,
    wait: await redis.lrange(at + 'wait', 0, -1),
    marker: await redis.zrangebyscore(at + 'marker', '-inf', '+inf'),
    maxLenEvents: await redis.hget(at + 'meta', 'opts.maxLenEvents'),
    idCounter: await redis.get(at + 'id'),
  };
}

describe('a put stores jobs as BullMQ does and acknowledges them in the same step', () => {
  const ctx = useTestQueue();

  const openRun = async (queue = ctx.queue) => {
    const run = new RunStore(ctx.redis, queue, 'r');
    await run.create(1);
    await run.registerProducer('p1', { host: 'test', pid: 1 }, 10_000);
    return run;
  };
  const status = () => readRunStatus(ctx.redis, ctx.queue, 'r', 10_000);

  for (const paused of [false, true]) {
    it(`leaves what BullMQ's own add leaves (queue ${paused ? 'paused' : 'running'})`, async () => {
      const ids = ['r.p1.0', 'r.p1.1', 'r.p1.2'];
      const viaBull = `${ctx.queue}-bull`;
      ctx.cleanups.push(() => dropQueue(ctx.redis, viaBull));
      const bull = openQueue(viaBull, ctx.redis);
      const ours = openQueue(ctx.queue, ctx.redis);
      ctx.cleanups.push(
        () => bull.close(),
        () => ours.close(),
      );
      if (paused) await Promise.all([bull.pause(), ours.pause()]);
      for (const [i, id] of ids.entries()) await bull.add('noop', data(i), { ...opts, jobId: id });

      const run = await openRun();
      const jobs = ids.map((id, i) => ({ id, seq: i, name: 'noop', data: JSON.stringify(data(i)) }));
      expect(await run.putJobs(0, 'p1', JSON.stringify(opts), jobs)).toEqual({
        acknowledged: 3,
        storedBefore: 0,
      });

      expect(await bullState(ctx.redis, ctx.queue, ids)).toEqual(await bullState(ctx.redis, viaBull, ids));
      // And BullMQ reads them back as its own.
      const job = await ours.getJob('r.p1.1');
      expect(job).toMatchObject({ name: 'noop', data: data(1), opts: { ...opts, jobId: 'r.p1.1' } });
      expect(await ours.getWaiting()).toHaveLength(3);
      expect(await run.unfinished()).toBe(3);
    });
  }

  it('a put sent again (its reply lost) adds and counts nothing twice, even once BullMQ trimmed the job', async () => {
    const run = await openRun();
    const jobs = [0, 1].map((i) => ({
      id: `r.p1.${i}`,
      seq: i,
      name: 'noop',
      data: JSON.stringify(data(i)),
    }));
    const options = JSON.stringify(opts);
    expect(await run.putJobs(0, 'p1', options, jobs)).toEqual({ acknowledged: 2, storedBefore: 0 });
    expect(await run.putJobs(0, 'p1', options, jobs)).toEqual({ acknowledged: 0, storedBefore: 2 });
    await ctx.redis.del(bullKeyPrefix(ctx.queue) + 'r.p1.0');
    await ctx.redis.lrem(bullKeyPrefix(ctx.queue) + 'wait', 0, 'r.p1.0');
    expect(await run.putJobs(0, 'p1', options, jobs)).toEqual({ acknowledged: 0, storedBefore: 2 });
    expect(await ctx.redis.exists(bullKeyPrefix(ctx.queue) + 'r.p1.0')).toBe(0);
    expect(await ctx.redis.lrange(bullKeyPrefix(ctx.queue) + 'wait', 0, -1)).toEqual(['r.p1.1']);
    expect((await status())?.jobs.produced).toBe(2);
    // A later seq of the same instance is new.
    const next = [{ id: 'r.p1.2', seq: 2, name: 'noop', data: JSON.stringify(data(2)) }];
    expect(await run.putJobs(0, 'p1', options, next)).toEqual({ acknowledged: 1, storedBefore: 0 });
  });

  it('an idempotency key the run accepted once is not put again, even once BullMQ trimmed its job', async () => {
    const run = await openRun();
    const keyed = [{ id: 'r.k.order-7', name: 'noop', data: JSON.stringify(data(7)) }];
    const options = JSON.stringify(opts);
    expect(await run.putJobs(0, 'p1', options, [...keyed, ...keyed])).toEqual({
      acknowledged: 1,
      storedBefore: 0,
    });
    await ctx.redis.del(bullKeyPrefix(ctx.queue) + 'r.k.order-7');
    expect(await run.putJobs(0, 'p1', options, keyed)).toEqual({ acknowledged: 0, storedBefore: 0 });
    expect(await ctx.redis.exists(bullKeyPrefix(ctx.queue) + 'r.k.order-7')).toBe(0);
    expect((await status())?.jobs.produced).toBe(1);
  });
});
