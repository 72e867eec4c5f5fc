import { describe, expect, it } from 'vitest';
import { createProducer } from '../../producers/producer.js';
import { builtinJobs, JobRegistry } from '../../shared/jobs/index.js';
import { jobOptions, openQueue } from '../../shared/queue.js';
import { RunStore } from '../../shared/run/run-store.js';
import { readRunStatus } from '../../shared/run/status.js';
import { useTestQueue } from '../helpers/test-queue.js';

const registry = new JobRegistry(builtinJobs);
const opts = jobOptions({ attempts: 1, backoffMs: 0, keepCompleted: 1000, keepFailed: 1000 });

describe('concurrent puts share batches', () => {
  const ctx = useTestQueue();

  const open = async (lingerMs = 0) => {
    const q = openQueue(ctx.queue, ctx.redis);
    ctx.cleanups.push(() => q.close());
    const run = new RunStore(ctx.redis, ctx.queue, 'r');
    await run.create(1);
    await run.registerProducer('p1', { host: 'test', pid: 1 }, 10_000);
    // Count the puts that reach Redis (jobs per script call); the calls themselves are real.
    const calls: number[] = [];
    const putJobs = run.putJobs.bind(run);
    run.putJobs = (shard, instance, options, jobs) => {
      calls.push(jobs.length);
      return putJobs(shard, instance, options, jobs);
    };
    const producer = createProducer({
      run,
      registry,
      producerId: 'p1',
      jobOptions: opts,
      batching: { lingerMs },
    });
    return { q, run, producer, calls };
  };

  it('100 concurrent callers: each resolves only once its own job is stored, in a few batches', async () => {
    const { q, run, producer, calls } = await open();
    const stored = await Promise.all(
      Array.from({ length: 100 }, async (_, i) => {
        const id = await producer.put('sleep', { value: i, ms: 0 });
        // At resolution, Redis holds this caller's job.
        return (await q.getJob(id)) !== undefined;
      }),
    );
    expect(stored.every(Boolean)).toBe(true);
    expect(calls.reduce((a, b) => a + b, 0)).toBe(100);
    expect(calls.length).toBeLessThanOrEqual(3);
    await producer.done();
    expect((await readRunStatus(ctx.redis, ctx.queue, 'r', 10_000))?.jobs.produced).toBe(100);
    expect(await run.unfinished()).toBe(100);
  });

  it('callers that keep putting as their puts resolve keep sharing batches, in put order', async () => {
    const { q, producer, calls } = await open();
    const ids: string[] = [];
    await Promise.all(
      Array.from({ length: 20 }, async () => {
        for (let i = 0; i < 10; i++) ids.push(await producer.put('sleep', { value: i, ms: 0 }));
      }),
    );
    expect(calls.reduce((a, b) => a + b, 0)).toBe(200);
    expect(calls.length).toBeLessThan(40);
    // getWaiting lists them oldest first: the order they were put (ids carry the producer's sequence).
    const waiting = (await q.getWaiting(0, -1)).map((j) => Number(j.id!.split('.').at(-1)));
    expect(waiting).toEqual([...waiting].sort((a, b) => a - b));
    expect(new Set(ids).size).toBe(200);
  });

  it('a batch that fails rejects only the calls it carried', async () => {
    const { q, run, producer } = await open(20);
    const putJobs = run.putJobs.bind(run);
    let n = 0;
    run.putJobs = (...args) => (++n === 1 ? Promise.reject(new Error('Redis said no')) : putJobs(...args));
    // Two callers linger into the first batch (which fails); two more go in the next one.
    const first = [producer.put('sleep', { value: 1, ms: 0 }), producer.put('sleep', { value: 2, ms: 0 })];
    const firstSettled = await Promise.allSettled(first);
    const second = await Promise.allSettled([
      producer.put('sleep', { value: 3, ms: 0 }),
      producer.put('sleep', { value: 4, ms: 0 }),
    ]);
    expect(firstSettled.map((s) => s.status)).toEqual(['rejected', 'rejected']);
    expect(second.map((s) => s.status)).toEqual(['fulfilled', 'fulfilled']);
    expect(await q.count()).toBe(2);
  });

  it('an invalid payload is refused at once and does not hold up or sink the others', async () => {
    const { q, producer } = await open();
    const results = await Promise.allSettled([
      producer.put('sleep', { value: 1, ms: 0 }),
      producer.put('sleep', { value: 'x', ms: 0 }),
      producer.put('sleep', { value: 3, ms: 0 }),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(await q.count()).toBe(2);
  });
});
