import { Queue } from 'bullmq';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { startConsumer } from '../../lib/consumer.js';
import { openProducer } from '../../lib/producer.js';
import { openRun } from '../../lib/run.js';
import { defineJob } from '../../shared/jobs/define.js';
import { redisUrl } from '../helpers/redis.js';
import { useTestQueue } from '../helpers/test-queue.js';

/** Returns its value after a delay that makes jobs finish out of put order; fails when told to. */
const echo = defineJob({
  name: 'echo',
  schema: z.object({ value: z.unknown(), ms: z.number().int(), fail: z.boolean().optional() }),
  handler: async ({ value, ms, fail }) => {
    await new Promise((r) => setTimeout(r, ms));
    if (fail) throw new Error(`boom ${String(value)}`);
    return value;
  },
});

describe('results in put order (collectResults)', () => {
  const ctx = useTestQueue();

  const common = () => ({
    redisUrl: redisUrl(),
    queue: ctx.queue,
    jobs: [echo],
    heartbeatMs: 100,
    flushMs: 10,
  });

  it('gives each producer its values in put order once joined, whatever order jobs finished in', async () => {
    const runId = 'res';
    const consumer = await startConsumer({ ...common(), runId, concurrency: 4 });
    const producers = await Promise.all(
      ['a', 'b'].map((id) =>
        openProducer({ ...common(), runId, producers: 2, producerId: id, collectResults: true, attempts: 1 }),
      ),
    );
    const run = openRun({ ...common(), runId });
    for (const [p, id] of producers.map((p, i) => [p, ['a', 'b'][i]!] as const))
      await p.putMany(
        Array.from({ length: 8 }, (_, i) => ({
          type: 'echo',
          payload: { value: `${id}${i}`, ms: (8 - i) * 15 },
        })),
      );
    await expect(run.results()).rejects.toThrow(/has not joined yet/);
    await Promise.all(producers.map((p) => p.done()));
    await run.join({ timeoutMs: 30_000 });
    const results = await run.results();
    expect(results.map((r) => [r.producer, r.outcome === 'completed' ? r.value : r.outcome])).toEqual(
      ['a', 'b'].flatMap((id) => Array.from({ length: 8 }, (_, i) => [id, `${id}${i}`])),
    );
    await run.close();
    await consumer.exited;
  });

  it('refuses a value past the per-job or per-run bound with an error naming it; a run without collectResults says so', async () => {
    const runId = 'bounded';
    const consumer = await startConsumer({ ...common(), runId });
    const producer = await openProducer({
      ...common(),
      runId,
      attempts: 1,
      collectResults: { maxJobBytes: 20, maxRunBytes: 30 },
    });
    const ids = await producer.putMany([
      { type: 'echo', payload: { value: 'x'.repeat(30), ms: 0 } }, // 32 bytes of JSON: past 20
      { type: 'echo', payload: { value: 'y'.repeat(10), ms: 0 } }, // 12 bytes
      { type: 'echo', payload: { value: 'z'.repeat(16), ms: 0 } }, // 18 bytes: 30 in all, just within
      { type: 'echo', payload: { value: 'w'.repeat(5), ms: 0 } }, // 7 more: past 30
    ]);
    await producer.done();
    const run = openRun({ ...common(), runId });
    const status = await run.join({ timeoutMs: 30_000 });
    expect(status.jobs).toMatchObject({ completed: 2, failed: 2 });
    const reason = async (id: string) => ctx.redis.hget(`{${ctx.queue}}:${ctx.queue}:${id}`, 'failedReason');
    expect(await reason(ids[0]!)).toMatch(
      /return value of 32 bytes is more than the 20 bytes .* maxJobBytes/,
    );
    expect(await reason(ids[3]!)).toMatch(/at most 30 bytes of results .* maxRunBytes.* would make it 37/);
    // Every put keeps its place; a failure's message is cut to the per-job bound.
    const results = await run.results();
    expect(results.map((r) => r.outcome)).toEqual(['failed', 'completed', 'completed', 'failed']);
    expect(results.filter((r) => r.outcome === 'completed').map((r) => r.value)).toEqual([
      'y'.repeat(10),
      'z'.repeat(16),
    ]);
    await run.close();
    await consumer.exited;

    const plain = await openProducer({ ...common(), runId: 'plain' });
    await plain.done();
    const other = openRun({ ...common(), runId: 'plain' });
    await expect(other.results()).rejects.toThrow(/was not created with collectResults/);
    await other.close();
  });

  it('keeps one slot per put in put order: completed with its value, failed with its message, cancelled, removed', async () => {
    const runId = 'slots';
    const producer = await openProducer({
      ...common(),
      runId,
      producerId: 'p',
      collectResults: true,
      attempts: 1,
    });
    const run = openRun({ ...common(), runId });
    // The case: x = [3, 1, 2, 6, 4], the first cancelled before it started.
    const ids = await producer.putMany(
      [3, 1, 2, 6, 4].map((x) => ({ type: 'echo', payload: { value: x, ms: x * 20, fail: x === 2 } })),
    );
    await producer.done();
    expect((await run.cancelJob(ids[0]!)).outcome).toBe('removed'); // waiting: it never runs
    // Deleted by hand while waiting: the run counts it removed.
    await new Queue(ctx.queue, { connection: ctx.redis, prefix: `{${ctx.queue}}` }).remove(ids[4]!);
    const consumer = await startConsumer({ ...common(), runId, concurrency: 4 });
    const status = await run.join({ timeoutMs: 30_000 });
    expect(status.jobs).toMatchObject({ completed: 2, failed: 1, cancelled: 1, removed: 1 });
    const results = await run.results();
    expect(results.map(({ jobId, ...r }) => [jobId, r])).toEqual([
      [ids[0], { producer: 'p', outcome: 'cancelled' }],
      [ids[1], { producer: 'p', outcome: 'completed', value: 1 }],
      [ids[2], { producer: 'p', outcome: 'failed', error: 'boom 2' }],
      [ids[3], { producer: 'p', outcome: 'completed', value: 6 }],
      [ids[4], { producer: 'p', outcome: 'removed' }],
    ]);
    await run.close();
    await consumer.exited;
  });

  it('streams results as jobs end, and a stream resumed from a cursor goes on just past it', async () => {
    const runId = 'stream';
    const consumer = await startConsumer({ ...common(), runId, concurrency: 3 });
    const producer = await openProducer({ ...common(), runId, collectResults: true, attempts: 1 });
    const run = openRun({ ...common(), runId });
    // Put order 0..5; the later ones are quicker, so they end first.
    const ids = await producer.putMany(
      [0, 1, 2, 3, 4, 5].map((x) => ({ type: 'echo', payload: { value: x, ms: (6 - x) * 150 } })),
    );
    const first: { jobId: string; cursor: string }[] = [];
    for await (const r of run.stream({ pollMs: 20 })) {
      first.push(r);
      if (first.length === 2) break; // a disconnect after two results
    }
    await producer.done();
    const rest = [];
    // Another handle (another process would do the same) resumes from the last cursor it saw.
    const again = openRun({ ...common(), runId });
    for await (const r of again.stream({ after: first.at(-1)!.cursor, pollMs: 20 })) rest.push(r);
    const streamed = [...first, ...rest].map((r) => r.jobId);
    expect([...streamed].sort()).toEqual([...ids].sort());
    // As they ended, not in put order: the first result is not the first put.
    expect(streamed[0]).not.toBe(ids[0]);
    expect((await run.results()).map((r) => r.jobId)).toEqual(ids);
    await Promise.all([run.close(), again.close()]);
    await consumer.exited;
  });
});
