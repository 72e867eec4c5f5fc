import type { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { bullKeyPrefix, keyedJobId, putJobId } from '../../shared/keys.js';
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
  /** Job `seq` of instance p1 in run `run`'s current creation. */
  const put = async (run: RunStore, seq: number) => ({
    id: putJobId(await run.idPrefix(), 'p1', seq),
    seq,
    name: 'noop',
    data: JSON.stringify(data(seq)),
  });
  const puts = (run: RunStore, seqs: number[]) => Promise.all(seqs.map((i) => put(run, i)));
  const status = () => readRunStatus(ctx.redis, ctx.queue, 'r', 10_000);

  for (const paused of [false, true]) {
    it(`leaves what BullMQ's own add leaves (queue ${paused ? 'paused' : 'running'})`, async () => {
      const run = await openRun();
      const jobs = await puts(run, [0, 1, 2]);
      const ids = jobs.map((j) => j.id);
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

      expect(await run.putJobs(0, 'p1', JSON.stringify(opts), jobs)).toEqual({
        acknowledged: 3,
        storedBefore: 0,
      });

      expect(await bullState(ctx.redis, ctx.queue, ids)).toEqual(await bullState(ctx.redis, viaBull, ids));
      // And BullMQ reads them back as its own.
      const job = await ours.getJob(ids[1]!);
      expect(job).toMatchObject({ name: 'noop', data: data(1), opts: { ...opts, jobId: ids[1] } });
      expect(await ours.getWaiting()).toHaveLength(3);
      expect(await run.unfinished()).toBe(3);
    });
  }

  it('a put sent again (its reply lost) adds and counts nothing twice, even once BullMQ trimmed the job', async () => {
    const run = await openRun();
    const jobs = await puts(run, [0, 1]);
    const [first, second] = jobs.map((j) => j.id);
    const options = JSON.stringify(opts);
    expect(await run.putJobs(0, 'p1', options, jobs)).toEqual({ acknowledged: 2, storedBefore: 0 });
    expect(await run.putJobs(0, 'p1', options, jobs)).toEqual({ acknowledged: 0, storedBefore: 2 });
    await ctx.redis.del(bullKeyPrefix(ctx.queue) + first);
    await ctx.redis.lrem(bullKeyPrefix(ctx.queue) + 'wait', 0, first!);
    expect(await run.putJobs(0, 'p1', options, jobs)).toEqual({ acknowledged: 0, storedBefore: 2 });
    expect(await ctx.redis.exists(bullKeyPrefix(ctx.queue) + first)).toBe(0);
    expect(await ctx.redis.lrange(bullKeyPrefix(ctx.queue) + 'wait', 0, -1)).toEqual([second]);
    expect((await status())?.jobs.produced).toBe(2);
    // A later seq of the same instance is new.
    const next = await puts(run, [2]);
    expect(await run.putJobs(0, 'p1', options, next)).toEqual({ acknowledged: 1, storedBefore: 0 });
  });

  it('an idempotency key the run accepted once is not put again, even once BullMQ trimmed its job', async () => {
    const run = await openRun();
    const id = keyedJobId(await run.idPrefix(), 'order-7');
    const keyed = [{ id, name: 'noop', data: JSON.stringify(data(7)) }];
    const options = JSON.stringify(opts);
    expect(await run.putJobs(0, 'p1', options, [...keyed, ...keyed])).toEqual({
      acknowledged: 1,
      storedBefore: 0,
    });
    await ctx.redis.del(bullKeyPrefix(ctx.queue) + id);
    expect(await run.putJobs(0, 'p1', options, keyed)).toEqual({ acknowledged: 0, storedBefore: 0 });
    expect(await ctx.redis.exists(bullKeyPrefix(ctx.queue) + id)).toBe(0);
    expect((await status())?.jobs.produced).toBe(1);
  });

  it('batches that reach Redis out of order (a NOSCRIPT fallback overtaken) are each stored and counted once', async () => {
    const run = await openRun();
    const options = JSON.stringify(opts);
    const early = await puts(run, [0, 1]);
    const late = await puts(run, [2, 3]);
    // The second batch runs first (the first one's EVALSHA failed with NOSCRIPT and went again as EVAL).
    expect(await run.putJobs(0, 'p1', options, late)).toEqual({ acknowledged: 2, storedBefore: 0 });
    expect(await run.putJobs(0, 'p1', options, early)).toEqual({ acknowledged: 2, storedBefore: 0 });
    // And either one sent yet again adds nothing.
    expect(await run.putJobs(0, 'p1', options, early)).toEqual({ acknowledged: 0, storedBefore: 2 });
    expect(await run.putJobs(0, 'p1', options, late)).toEqual({ acknowledged: 0, storedBefore: 2 });
    expect((await status())?.jobs).toMatchObject({ produced: 4, unfinished: 4 });
    expect(await ctx.redis.llen(bullKeyPrefix(ctx.queue) + 'wait')).toBe(4);
  });

  it('a put whose id exists without the run having stored it is refused, and writes nothing', async () => {
    const run = await openRun();
    const [a, b] = await puts(run, [0, 1]);
    const q = openQueue(ctx.queue, ctx.redis);
    ctx.cleanups.push(() => q.close());
    // Something outside conveyor wrote b's id.
    await q.add('noop', data(99), { jobId: b!.id });
    await expect(run.putJobs(0, 'p1', JSON.stringify(opts), [a!, b!])).rejects.toMatchObject({
      code: 'id-taken',
    });
    expect(await ctx.redis.exists(bullKeyPrefix(ctx.queue) + a!.id)).toBe(0);
    expect((await status())?.jobs.produced).toBe(0);
  });

  it('a put into a run whose state is gone writes nothing', async () => {
    const run = await openRun();
    const job = await put(run, 0);
    await ctx.redis.del(run.keys.meta);
    await expect(run.putJobs(0, 'p1', JSON.stringify(opts), [job])).rejects.toMatchObject({ code: 'no-run' });
    expect(await ctx.redis.exists(bullKeyPrefix(ctx.queue) + job.id)).toBe(0);
    expect(await ctx.redis.exists(run.keys.meta)).toBe(0);
  });
});
