import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { UnrecoverableError } from 'bullmq';
import { startConsumer } from '../../lib/consumer.js';
import { openProducer } from '../../lib/producer.js';
import { openRun } from '../../lib/run.js';
import { defineJob } from '../../shared/jobs/define.js';
import { callbackPayload } from '../../shared/jobs/run-report-job.js';
import type { CallbackPayload } from '../../shared/run/callbacks.js';
import { formatRunStatus, readRunStatus } from '../../shared/run/status.js';
import { redisUrl } from '../helpers/redis.js';
import { useTestQueue } from '../helpers/test-queue.js';

const FAST = { heartbeatMs: 100, flushMs: 10 };

/** Jobs that succeed or fail as told; the callback type records what it was given. */
function jobTypes(seen: CallbackPayload[]) {
  const work = defineJob({
    name: 'work',
    schema: z.object({ fail: z.boolean() }),
    handler: ({ fail }) =>
      fail ? Promise.reject(new UnrecoverableError('told to fail')) : Promise.resolve(1),
  });
  const record = defineJob({
    name: 'record',
    schema: callbackPayload(z.unknown()),
    handler: async (p) => {
      // slow enough that a consumer leaving at the join would strand it
      await new Promise((r) => setTimeout(r, 300));
      seen.push(p);
      return p.callback;
    },
  });
  return [work, record];
}

describe('join callbacks', () => {
  const ctx = useTestQueue();

  async function runWith(fails: boolean[], runId: string) {
    const seen: CallbackPayload[] = [];
    const jobs = jobTypes(seen);
    const common = { redisUrl: redisUrl(), queue: ctx.queue, jobs, ...FAST };
    const consumer = await startConsumer({ ...common, runId, concurrency: 2 });
    const producer = await openProducer({
      ...common,
      runId,
      attempts: 1,
      onJoin: { type: 'record', payload: { stage: 1 } },
      onSuccess: { type: 'record', payload: { all: 'good' } },
    });
    const ids = await producer.putMany(fails.map((fail) => ({ type: 'work', payload: { fail } })));
    await producer.done();
    const exit = await consumer.exited;
    // The consumer left only once its run's callbacks had finished: the run is done.
    const status = await readRunStatus(ctx.redis, ctx.queue, runId, 5_000);
    return { seen, exit, status: status!, ids };
  }

  it('a run with a failed job: on-join runs once with totals and failed ids, on-success is skipped; the consumer finishes the callback before leaving', async () => {
    const { seen, exit, status, ids } = await runWith([false, true, false], 'run-f');
    expect(exit.state).toBe('cancelled');
    expect(status.state).toBe('done');
    expect(status.callbacks).toEqual([
      {
        name: 'on-join',
        type: 'record',
        when: 'always',
        state: 'completed',
        jobId: `${status.idPrefix}@on-join`,
      },
      {
        name: 'on-success',
        type: 'record',
        when: 'success',
        state: 'skipped',
        jobId: `${status.idPrefix}@on-success`,
      },
    ]);
    expect(seen).toEqual([
      {
        run: 'run-f',
        callback: 'on-join',
        totals: { produced: 3, completed: 2, failed: 1, removed: 0, lostProducers: 0 },
        failedJobIds: [ids[1]],
        failedJobsMore: 0,
        payload: { stage: 1 },
      },
    ]);
    expect(formatRunStatus(status)).toContain(
      'callbacks  on-join (record) completed, on-success (record) skipped',
    );
  });

  it('a run where nothing failed runs on-join and on-success, each once', async () => {
    const { seen, status } = await runWith([false, false], 'run-ok');
    expect(status.state).toBe('done');
    expect(seen.map((p) => [p.callback, p.payload]).sort()).toEqual([
      ['on-join', { stage: 1 }],
      ['on-success', { all: 'good' }],
    ]);
    // The callback is an ordinary BullMQ job, linked to its run.
    const job = await ctx.redis.hgetall(`{${ctx.queue}}:${ctx.queue}:${status.idPrefix}@on-success`);
    expect(JSON.parse(job.data!)).toMatchObject({
      run: 'run-ok',
      afterRun: 'run-ok',
      callback: 'on-success',
    });
  });

  it('an unknown callback type is refused before the run is created', async () => {
    await expect(
      openProducer({ redisUrl: redisUrl(), queue: ctx.queue, runId: 'r', onJoin: { type: 'nope' } }),
    ).rejects.toThrow(/onJoin.type: unknown job type "nope"/);
    const run = openRun({ redisUrl: redisUrl(), queue: ctx.queue, runId: 'r' });
    expect(await run.status()).toBeNull();
    await run.close();
  });
});
