import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { startConsumer } from '../../lib/consumer.js';
import { openProducer } from '../../lib/producer.js';
import { openRun } from '../../lib/run.js';
import { defineJob } from '../../shared/jobs/define.js';
import { redisUrl } from '../helpers/redis.js';
import { useTestQueue } from '../helpers/test-queue.js';

/** Returns its value after a delay that makes jobs finish out of put order. */
const echo = defineJob({
  name: 'echo',
  schema: z.object({ value: z.unknown(), ms: z.number().int() }),
  handler: async ({ value, ms }) => {
    await new Promise((r) => setTimeout(r, ms));
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
    expect(results.map((r) => [r.producer, r.results.map((x) => x.value)])).toEqual([
      ['a', ['a0', 'a1', 'a2', 'a3', 'a4', 'a5', 'a6', 'a7']],
      ['b', ['b0', 'b1', 'b2', 'b3', 'b4', 'b5', 'b6', 'b7']],
    ]);
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
    expect((await run.results())[0]!.results.map((r) => r.value)).toEqual(['y'.repeat(10), 'z'.repeat(16)]);
    await run.close();
    await consumer.exited;

    const plain = await openProducer({ ...common(), runId: 'plain' });
    await plain.done();
    const other = openRun({ ...common(), runId: 'plain' });
    await expect(other.results()).rejects.toThrow(/was not created with collectResults/);
    await other.close();
  });
});
