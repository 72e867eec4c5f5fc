import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { createProducer } from '../../producers/producer.js';
import { loadJobRegistry } from '../../shared/jobs/index.js';
import { jobOptions, openQueue } from '../../shared/queue.js';
import { projectRoot } from '../../shared/roles.js';
import { RunStore } from '../../shared/run/run-store.js';
import { makeDashboard } from '../dashboard/harness.js';
import { exitOf, spawnRole } from '../helpers/processes.js';
import { FAST } from '../helpers/demo.js';
import { redisUrl } from '../helpers/redis.js';
import { useTestQueue } from '../helpers/test-queue.js';

const MiB = 1024 * 1024;

describe("a handler's huge error", () => {
  const ctx = useTestQueue();

  it("is stored bounded: message and stack cut short, the text's first 256 KiB in the job's log, Bull Board's failed list small", async () => {
    const JOB_MODULES = './test/fixtures/jobs.ts';
    const q = openQueue(ctx.queue, ctx.redis);
    ctx.cleanups.push(() => q.close());
    const run = new RunStore(ctx.redis, ctx.queue, 'r');
    await run.create(1, 10_000);
    await run.registerProducer('p1', { host: 'test', pid: 1 }, 10_000);
    const producer = createProducer({
      run,
      registry: await loadJobRegistry([JOB_MODULES], projectRoot),
      producerId: 'p1',
      jobOptions: jobOptions({ attempts: 1, backoffMs: 0, keepCompleted: 100, keepFailed: 100 }),
    });
    const ids = await producer.putMany(
      Array.from({ length: 5 }, () => ({ type: 'huge-error', payload: { bytes: 4 * MiB } })),
    );
    await producer.flush();
    await run.producerDone('p1');
    const consumer = spawnRole(
      'consumer',
      { ...FAST, REDIS_URL: redisUrl(), QUEUE: ctx.queue, RUN_ID: 'r', JOB_MODULES, CONCURRENCY: '5' },
      { label: 'c1' },
    );
    expect((await exitOf(consumer, 60_000)).code).toBe(0);
    // The consumer's own log says each failure in a bounded line too.
    expect(consumer.output().length).toBeLessThan(256 * 1024);

    for (const id of ids) {
      const job = (await q.getJob(id))!;
      expect(job.failedReason.length).toBeLessThanOrEqual(4 * 1024);
      expect(job.failedReason).toMatch(/^x+… \(4194319 characters; more in the job's log\)$/);
      expect(JSON.stringify(job.stacktrace).length).toBeLessThan(16 * 1024);
      // The rest is in the job's log, itself bounded: its head, and how much was left out.
      const { logs } = await q.getJobLogs(id);
      expect(logs).toHaveLength(1);
      expect(logs[0]!.length).toBeLessThanOrEqual(256 * 1024 + 200);
      expect(logs[0]).toMatch(/^Error: x{1000}/);
      expect(logs[0]).toContain('characters not kept');
    }
    const dash = makeDashboard(ctx.queue);
    ctx.cleanups.push(() => dash.close());
    const failed = await request(dash.dashboard.app)
      .get(`/queues/api/queues?activeQueue=${ctx.queue}&status=failed&page=1`)
      .expect(200);
    // Before: 42 MB for these five.
    expect(failed.text.length).toBeLessThan(200 * 1024);
  });
});
