import { setTimeout as sleep } from 'node:timers/promises';
import { beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { loadConsumerConfig } from '../../consumers/config.js';
import { startConsumer, type ConsumerHandle, type ConsumerObserver } from '../../consumers/consumer.js';
import { Registry } from 'prom-client';
import { createConsumerMetrics } from '../../shared/metrics/process-metrics.js';
import { createProducer } from '../../producers/producer.js';
import { defineJob } from '../../shared/jobs/define.js';
import { builtinJobs, JobRegistry } from '../../shared/jobs/index.js';
import { createLogger } from '../../shared/logger.js';
import { openRun } from '../../lib/run.js';
import { jobOptions, openQueue } from '../../shared/queue.js';
import { RunStore } from '../../shared/run/run-store.js';
import { readRunStatus } from '../../shared/run/status.js';
import { connect, pollUntil, redisUrl } from '../helpers/redis.js';
import { useTestQueue } from '../helpers/test-queue.js';

const quiet = createLogger({ level: 'silent', service: 'test' });
const host = { host: 'test', pid: 1 };

/** What the test handlers saw, by job id: started, aborted (with the abort's message), returned. */
const seen = new Map<string, { started: number; aborted?: string; returned?: boolean }>();

const watchful = defineJob({
  name: 'watchful',
  schema: z.strictObject({ ms: z.number().int() }),
  handler: async ({ ms }, { jobId, signal }) => {
    seen.set(jobId, { started: Date.now() });
    try {
      await sleep(ms, undefined, { signal });
    } catch (err) {
      seen.get(jobId)!.aborted = signal.reason instanceof Error ? signal.reason.message : String(err);
      throw err;
    }
    seen.get(jobId)!.returned = true;
  },
});

/** Ignores its signal: only a grace period (or a sandbox) can end its job. */
const stubborn = defineJob({
  name: 'stubborn',
  schema: z.strictObject({ ms: z.number().int() }),
  handler: async ({ ms }, { jobId }) => {
    seen.set(jobId, { started: Date.now() });
    await sleep(ms);
    seen.get(jobId)!.returned = true;
  },
});

const registry = new JobRegistry([...builtinJobs, watchful, stubborn]);

describe('cancel a job or a run, and time jobs out (real Redis, in-process consumers)', () => {
  const ctx = useTestQueue();

  beforeEach(() => {
    seen.clear();
  });

  const status = async () => {
    const s = await readRunStatus(ctx.redis, ctx.queue, 'r', 10_000);
    if (!s) throw new Error('no run');
    return s;
  };

  const setUp = async (opts: { attempts?: number; backoffMs?: number } = {}) => {
    const q = openQueue(ctx.queue, ctx.redis);
    ctx.cleanups.push(() => q.close());
    const run = new RunStore(ctx.redis, ctx.queue, 'r');
    await run.create(1, 10_000);
    await run.registerProducer('p1', host, 10_000);
    const producer = createProducer({
      run,
      registry,
      producerId: 'p1',
      jobOptions: jobOptions({
        attempts: opts.attempts ?? 3,
        backoffMs: opts.backoffMs ?? 10,
        keepCompleted: 100,
        keepFailed: 100,
      }),
    });
    return { q, run, producer };
  };

  const consumer = async (
    env: Record<string, string> = {},
    observer?: ConsumerObserver,
  ): Promise<ConsumerHandle> => {
    const c = await startConsumer(
      loadConsumerConfig({
        REDIS_URL: redisUrl(),
        QUEUE: ctx.queue,
        RUN_ID: 'r',
        HEARTBEAT_MS: '200',
        CONCURRENCY: '2',
        ...env,
      }),
      { redis: connect(), registry, log: quiet, host: 'test', pid: 2, ...(observer ? { observer } : {}) },
    );
    ctx.cleanups.push(() => c.stop('test over'));
    return c;
  };

  it('a waiting job cancelled before any consumer takes it never runs, and counts as cancelled', async () => {
    const { run, producer } = await setUp();
    const [first, second] = await producer.putMany([
      { type: 'watchful', payload: { ms: 0 } },
      { type: 'watchful', payload: { ms: 0 } },
    ]);
    await producer.flush();
    expect(await run.cancelJob(first!)).toMatchObject({ outcome: 'removed', shard: 0 });
    const c = await consumer();
    await producer.done();
    const exit = await c.exited;
    expect(exit.state).toBe('cancelled');
    expect(seen.has(first!)).toBe(false);
    expect(seen.get(second!)?.returned).toBe(true);
    const s = await status();
    expect(s.join.totals).toMatchObject({ produced: 2, completed: 1, cancelled: 1, failed: 0, removed: 0 });
    expect(s.jobs.cancelled).toBe(1);
    // A second cancel, and a cancel of the finished job, change nothing and say so.
    expect((await run.cancelJob(first!)).outcome).toBe('joined');
    expect((await run.cancelJob(second!)).outcome).toBe('finished');
  });

  it('an active job is aborted by the consumer holding it, recorded cancelled, and not retried', async () => {
    const { run, producer } = await setUp({ attempts: 3 });
    const metrics = new Registry();
    const c = await consumer({}, createConsumerMetrics(metrics, ctx.queue));
    const id = await producer.put('watchful', { ms: 60_000 });
    await pollUntil('the job to start', () => Promise.resolve(seen.has(id) ? true : undefined));
    const requested = Date.now();
    expect((await run.cancelJob(id)).outcome).toBe('signalled');
    await pollUntil('the handler to see the abort', () => Promise.resolve(seen.get(id)?.aborted));
    expect(Date.now() - requested).toBeLessThan(2_000);
    expect(seen.get(id)!.aborted).toMatch(/^conveyor: cancelled/);
    await producer.done();
    const exit = await c.exited;
    expect(exit.state).toBe('cancelled');
    const s = await status();
    expect(s.join.totals).toMatchObject({ produced: 1, completed: 0, failed: 0, cancelled: 1 });
    // Not retried: one attempt, in BullMQ's failed set as cancelled.
    const job = await openQueue(ctx.queue, ctx.redis).getJob(id);
    expect(job?.attemptsMade).toBe(1);
    expect(job?.failedReason).toMatch(/^conveyor: cancelled/);
    expect(await counter(metrics, 'conveyor_jobs_cancelled_total')).toBe(1);
    expect(await counter(metrics, 'conveyor_jobs_failed_total')).toBe(0);
  });

  it('a handler that ignores the signal: recorded cancelled after CANCEL_GRACE_MS, and the consumer says a handler still runs', async () => {
    const { run, producer } = await setUp();
    const c = await consumer({ CANCEL_GRACE_MS: '300' });
    const id = await producer.put('stubborn', { ms: 4_000 });
    await pollUntil('the job to start', () => Promise.resolve(seen.has(id) ? true : undefined));
    await run.cancelJob(id);
    await producer.done();
    // The run joins long before the handler returns: its slot was given up after the grace.
    const runaway = await pollUntil('the consumer record to list the runaway handler', async () => {
      const rec = (await status()).consumers.find((x) => x.id === c.id);
      return rec?.runaway?.includes(id) ? rec : undefined;
    });
    expect(runaway.runaway).toEqual([id]);
    await pollUntil('the run to join', async () => ((await run.isJoined()) ? true : undefined), 3_000);
    expect(seen.get(id)?.returned).toBeUndefined();
    expect((await status()).join.totals).toMatchObject({ produced: 1, cancelled: 1 });
    await c.exited;
  });

  it('a timeout aborts the attempt, which is retried per ATTEMPTS; the last lands in the failed set as timed out', async () => {
    const { producer } = await setUp({ attempts: 2, backoffMs: 10 });
    const metrics = new Registry();
    const c = await consumer({}, createConsumerMetrics(metrics, ctx.queue));
    const id = await producer.put('watchful', { ms: 60_000 }, { timeoutMs: 200 });
    await producer.done();
    const exit = await c.exited;
    expect(exit).toMatchObject({ state: 'cancelled', jobsFailed: 1 });
    const s = await status();
    expect(s.join.totals).toMatchObject({ produced: 1, failed: 1, cancelled: 0 });
    const job = await openQueue(ctx.queue, ctx.redis).getJob(id);
    expect(job?.attemptsMade).toBe(2);
    expect(job?.failedReason).toBe('timed out after 200 ms');
    // Timeouts apart from other failures: the job counts once, as timed out; its first attempt was retried.
    expect(await counter(metrics, 'conveyor_jobs_timed_out_total')).toBe(1);
    expect(await counter(metrics, 'conveyor_jobs_failed_total')).toBe(0);
    expect(await counter(metrics, 'conveyor_jobs_retried_total')).toBe(1);
  });

  it('JOB_TIMEOUT_MS bounds the built-in types', async () => {
    const { producer } = await setUp({ attempts: 1 });
    const c = await consumer({ JOB_TIMEOUT_MS: '150' });
    const id = await producer.put('sleep', { value: 1, ms: 60_000 });
    await producer.done();
    await c.exited;
    expect((await openQueue(ctx.queue, ctx.redis).getJob(id))?.failedReason).toBe('timed out after 150 ms');
  });

  it('cancelling a run: unstarted jobs cancelled, active ones aborted, jobs acknowledged after the cancel caught, joined once with exact totals', async () => {
    const { run, producer } = await setUp();
    const c = await consumer();
    const ids = await producer.putMany(
      Array.from({ length: 6 }, () => ({ type: 'watchful', payload: { ms: 60_000 } })),
    );
    await producer.flush();
    await pollUntil('two jobs to start', () => Promise.resolve(seen.size === 2 ? true : undefined));
    const r = await run.cancel();
    expect(r).toMatchObject({ outcome: 'cancelled', removed: 4 });
    // A put racing the cancel (acknowledged after it): the next join check cancels it.
    const late = await producer.put('watchful', { ms: 60_000 });
    await producer.done();
    const exit = await c.exited;
    expect(exit.state).toBe('cancelled');
    const s = await status();
    expect(s.join.state).toBe('joined');
    expect(s.join.totals).toMatchObject({ produced: 7, completed: 0, failed: 0, removed: 0, cancelled: 7 });
    expect([...seen.values()].every((v) => v.aborted !== undefined)).toBe(true);
    expect(seen.has(late)).toBe(false);
    expect(ids).toHaveLength(6);
    // Cancelling a joined run is a no-op that says so; so is registering a producer after the cancel.
    expect((await run.cancel()).outcome).toBe('joined');
  });

  it('the library: openRun(...).cancelJob(id) and .cancel() are the same calls', async () => {
    const { producer } = await setUp();
    const handle = openRun({ runId: 'r', queue: ctx.queue, redis: ctx.redis });
    ctx.cleanups.push(() => handle.close());
    const id = await producer.put('watchful', { ms: 0 });
    await producer.flush();
    expect(await handle.cancelJob(id)).toMatchObject({ outcome: 'removed', shard: 0 });
    expect(await handle.cancel()).toMatchObject({ outcome: 'cancelled', removed: 0 });
    await producer.done();
    const s = await handle.join({ timeoutMs: 5_000 });
    expect(s.join.totals).toMatchObject({ produced: 1, cancelled: 1 });
    expect((await handle.cancel()).outcome).toBe('joined');
  });

  it('a run cancelled before a producer registered joins without waiting for it; the late producer is refused', async () => {
    const q = openQueue(ctx.queue, ctx.redis);
    ctx.cleanups.push(() => q.close());
    const run = new RunStore(ctx.redis, ctx.queue, 'r');
    await run.create(2, 10_000);
    await run.registerProducer('p1', host, 10_000);
    await run.cancel();
    await expect(run.registerProducer('p2', host, 10_000)).rejects.toMatchObject({ code: 'cancelled' });
    const { join } = await run.producerDone('p1', [0]);
    expect(join.joinedNow).toBe(true);
    expect((await status()).join.totals).toMatchObject({ produced: 0, cancelled: 0 });
  });
});

async function counter(registry: Registry, name: string): Promise<number> {
  const m = await registry.getSingleMetric(name)?.get();
  return m?.values.reduce((n, v) => n + v.value, 0) ?? NaN;
}
