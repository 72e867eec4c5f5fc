import { Worker } from 'bullmq';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { loadConsumerConfig } from '../../consumers/config.js';
import { startConsumer } from '../../consumers/consumer.js';
import { loadProducerConfig } from '../../producers/config.js';
import { createProducer } from '../../producers/producer.js';
import { runProducer } from '../../producers/run-producer.js';
import { defineJob } from '../../shared/jobs/define.js';
import { builtinJobs, JobRegistry } from '../../shared/jobs/index.js';
import { pendingRunsKey, queuePrefix, runIndexKey } from '../../shared/keys.js';
import { createLogger } from '../../shared/logger.js';
import { jobOptions, openQueue } from '../../shared/queue.js';
import { RunError, RunStore } from '../../shared/run/run-store.js';
import { formatRunStatus, readRunStatus } from '../../shared/run/status.js';
import { connect, pollUntil, redisUrl } from '../helpers/redis.js';
import { useTestQueue } from '../helpers/test-queue.js';

const registry = new JobRegistry(builtinJobs);
const keepAll = jobOptions({ attempts: 1, backoffMs: 0, keepCompleted: 1000, keepFailed: 1000 });
const host = { host: 'test', pid: 1 };
const sleepJob = (value: number) => ({ type: 'sleep', payload: { value, ms: 0 } });
const quiet = createLogger({ level: 'silent', service: 'test' });
/** A run's totals at the join when its one job completed. */
const ONE_COMPLETED = { produced: 1, completed: 1, failed: 0, removed: 0, cancelled: 0, lostProducers: 0 };

/** An in-process consumer on `queue` (heartbeat 100 ms) with `env` on top. */
async function consumeIn(queue: string, env: Record<string, string>, jobs = registry) {
  const config = loadConsumerConfig({ REDIS_URL: redisUrl(), QUEUE: queue, HEARTBEAT_MS: '100', ...env });
  return startConsumer(config, { redis: connect(), registry: jobs, log: quiet, host: 'test', pid: 2 });
}

/** One regression test per protocol bug found against the run protocol before producer instances. */
describe('join protocol regressions', () => {
  const ctx = useTestQueue();

  const open = async (leaseMs = 10_000, expected = 1) => {
    const q = openQueue(ctx.queue, ctx.redis);
    ctx.cleanups.push(() => q.close());
    const run = new RunStore(ctx.redis, ctx.queue, 'r');
    await run.create(expected, leaseMs);
    return { q, run };
  };

  /** `open`, with producer p1 registered and its in-process producer. */
  const openWithProducer = async () => {
    const { q, run } = await open();
    await run.registerProducer('p1', host, 10_000);
    const producer = createProducer({ run, registry, producerId: 'p1', jobOptions: keepAll });
    return { q, run, producer };
  };

  const status = () => readRunStatus(ctx.redis, ctx.queue, 'r', 10_000);

  it('bug 1: a dead producer is declared lost although the only checker calls slower than half the lease', async () => {
    const { run } = await open(1_000);
    await run.registerProducer('p1', host, 1_000);
    // The producer dies at once. The only process left checks every 600 ms: every gap looks like an
    // outage (> lease / 2), which used to push the lease back for ever.
    const started = Date.now();
    const lost = await pollUntil(
      'the dead producer to be declared lost',
      async () => {
        const j = await run.tryJoin();
        return j.joinedNow ? j : undefined;
      },
      15_000,
      600,
    );
    expect(lost.joinedNow).toBe(true);
    // One outage credit at most: lease + one gap + a check interval, with room for a busy machine.
    expect(Date.now() - started).toBeLessThan(8_000);
    expect((await status())?.producers.lost).toBe(1);
  });

  it('bug 1: a run served only by workers without RUN_ID still declares a dead producer lost and joins', async () => {
    const { run } = await open(600);
    await run.registerProducer('p1', host, 600);
    // p1 dies without a word. A plain worker (no RUN_ID) is the only process attached.
    const consumer = await consumeIn(ctx.queue, { LEASE_MS: '600', CONSUMER_ID: 'plain' });
    ctx.cleanups.push(() => consumer.stop('test over'));
    const joined = await pollUntil('the run to join', async () =>
      (await run.isJoined()) ? true : undefined,
    );
    expect(joined).toBe(true);
    expect((await status())?.join.totals).toMatchObject({ lostProducers: 1, produced: 0 });
  });

  it('bug 2: a finish reported before its ack counts once even after BullMQ deleted the job', async () => {
    const { q, run, producer } = await openWithProducer();
    // The put is stored but its acknowledgement waits (batched); the job runs, BullMQ deletes it at
    // completion (KEEP_COMPLETED=0), and only then does the consumer's report arrive.
    const id = await producer.put('sleep', { value: 1, ms: 0 });
    await q.remove(id);
    const report = await run.recordFinished(0, [{ id, outcome: 'completed', instance: 'p1' }]);
    expect(report).toMatchObject({ counted: 1, duplicates: 0 });
    const { join } = await producer.done();
    expect(join.joinedNow).toBe(true);
    expect((await status())?.join.totals).toEqual(ONE_COMPLETED);
  });

  it('bug 2: more than 1000 open jobs whose records vanished are reconciled in bounded passes and the run joins', async () => {
    const { q, run, producer } = await openWithProducer();
    const ids = await producer.putMany(Array.from({ length: 1_200 }, (_, i) => sleepJob(i)));
    await producer.done();
    await q.obliterate({ force: true }); // every job removed by hand, none reported
    const joined = await pollUntil(
      'the run to join',
      async () => {
        const j = await run.tryJoin();
        return j.joined ? j : undefined;
      },
      40_000,
      200,
    );
    expect(joined.joinedNow).toBe(true);
    expect((await status())?.join.totals).toMatchObject({ produced: ids.length, removed: ids.length });
  });

  it('bug 3: a producer restarted with the same id gets new job ids and its first incarnation is settled', async () => {
    const { q, run } = await open();
    const first = await run.registerProducer('p1', host, 10_000);
    const before = createProducer({
      run,
      registry,
      producerId: 'p1',
      ...first,
      jobOptions: keepAll,
    });
    const firstIds = await before.putMany([sleepJob(0), sleepJob(1)]);
    await before.flush();
    // One more add reached Redis, but the process died before acknowledging it.
    await run.markInflight(0, first.instance, ['r.p1.2']);
    await q.add(
      'sleep',
      { run: 'r', producer: first.instance, payload: { value: 2, ms: 0 } },
      { jobId: 'r.p1.2' },
    );

    // The container restarts: same hostname, same pid, same default PRODUCER_ID.
    const second = await run.registerProducer('p1', host, 10_000);
    expect(second.incarnation).toBe(2);
    const after = createProducer({
      run,
      registry,
      producerId: 'p1',
      ...second,
      jobOptions: keepAll,
    });
    const secondIds = await after.putMany([sleepJob(0), sleepJob(1)]);
    expect(secondIds.filter((id) => firstIds.includes(id))).toEqual([]);
    expect(await q.count()).toBe(5);
    const { state } = await after.done();
    expect(state).toBe('done');
    // Settled: the first incarnation's 2 acknowledged + its 1 in-flight job that reached Redis.
    expect(await run.unfinished()).toBe(5);
    expect((await status())?.producers.list[0]).toMatchObject({ id: 'p1', produced: 5, incarnation: 2 });
    // The first incarnation is fenced: a late acknowledgement of its is refused.
    await run.markInflight(0, first.instance, ['r.p1.3']);
    await expect(run.ackAdded(0, first.instance, ['r.p1.3'])).rejects.toMatchObject({ code: 'fenced' });
  });

  it('bug 4: a job retried after the run counted it is re-opened, and the run joins only after its new outcome', async () => {
    let runs = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const flaky = defineJob({
      name: 'flaky',
      schema: z.strictObject({}),
      // Fails the first time; the second run waits for the test to let it finish.
      handler: async () => {
        if (++runs === 1) throw new Error('first run fails');
        await gate;
        return 'ok';
      },
    });
    const jobs = new JobRegistry([...builtinJobs, flaky]);
    const { q, run } = await open(10_000, 2);
    await run.registerProducer('p1', host, 10_000);
    await run.registerProducer('p2', host, 10_000);
    const producer = createProducer({
      run,
      registry: jobs,
      producerId: 'p1',
      jobOptions: keepAll,
    });
    const id = await producer.put('flaky', {});
    await producer.done();
    const consumer = await consumeIn(ctx.queue, { RUN_ID: 'r', CONSUMER_ID: 'c1' }, jobs);
    ctx.cleanups.push(() => {
      release();
      return consumer.stop('test over');
    });
    await pollUntil('the failure to be counted', async () =>
      (await status())?.jobs.failed === 1 ? true : undefined,
    );
    // Someone presses "retry" in Bull Board while the run is still pending (p2 has not finished).
    const job = await q.getJob(id);
    await job!.retry('failed');
    await pollUntil('the retried job to be re-opened', async () =>
      (await status())?.jobs.reopened === 1 ? true : undefined,
    );
    // The last producer finishes while the retried job runs: the run must wait for it.
    expect((await run.producerDone('p2')).join).toMatchObject({ joined: false, reason: 'jobs-unfinished' });
    expect((await run.tryJoin()).joined).toBe(false);
    release();
    await pollUntil('the join', async () => ((await run.isJoined()) ? true : undefined));
    const s = await status();
    expect(s?.join.totals).toMatchObject({ produced: 1, completed: 1, failed: 0 });
    expect(runs).toBe(2);
  });

  it('bug 4: a job retried after the run joined is reported as work after the join', async () => {
    const { q, run, producer } = await openWithProducer();
    const id = await producer.put('sleep', { value: 1, ms: 0 });
    await producer.done();
    const consumer = await consumeIn(ctx.queue, { CONSUMER_ID: 'c1' });
    ctx.cleanups.push(() => consumer.stop('test over'));
    await pollUntil('the join', async () => ((await run.isJoined()) ? true : undefined));
    const job = await q.getJob(id);
    await job!.retry('completed');
    const s = await pollUntil('the re-run to be reported', async () => {
      const st = await status();
      return st?.jobs.afterJoin === 1 ? st : undefined;
    });
    expect(s.join.totals).toMatchObject({ produced: 1, completed: 1 });
  });

  it('bug 5: a producer declared lost cannot add: its puts reject and store nothing', async () => {
    const { q, run } = await open(300);
    await run.registerProducer('p1', host, 300);
    const producer = createProducer({ run, registry, producerId: 'p1', jobOptions: keepAll });
    await pollUntil('p1 to be declared lost (and the empty run to join)', async () =>
      (await run.tryJoin()).joined ? true : undefined,
    );
    // The zombie's put must not leave a job behind the join.
    await expect(producer.put('sleep', { value: 1, ms: 0 })).rejects.toBeInstanceOf(RunError);
    await expect(producer.put('sleep', { value: 2, ms: 0 })).rejects.toThrow(/declared lost/);
    expect(await q.count()).toBe(0);
    const { state } = await producer.done().catch(() => ({ state: 'refused' }));
    expect(state).not.toBe('done');
  });

  it('bug 5: a producer the run declared lost while it reported done ends lost, not done', async () => {
    const { q } = await open(3_000);
    // The run gives up on the producer just before its done() arrives (a slow final flush).
    class LateRun extends RunStore {
      override async producerDone(...args: Parameters<RunStore['producerDone']>) {
        await ctx.redis.zadd(this.keys.leases, 0, 'p1');
        await this.tryJoin();
        return super.producerDone(...args);
      }
    }
    const late = new LateRun(ctx.redis, ctx.queue, 'r');
    const config = loadProducerConfig({
      REDIS_URL: redisUrl(),
      QUEUE: ctx.queue,
      RUN_ID: 'r',
      PRODUCER_ID: 'p1',
      JOBS: '1',
      PRODUCE_INTERVAL_MS: '0',
      HEARTBEAT_MS: '100',
      LEASE_MS: '3000',
    });
    const outcome = await runProducer(
      config,
      { queues: [q], run: late, registry, log: quiet, host: 'test', pid: 1 },
      new AbortController().signal,
    );
    expect(outcome.lost).toBe(true);
    expect((await status())?.producers.list[0]?.state).toBe('lost');
  });

  it('consumers waiting for a run no producer has created yet show in its status', async () => {
    const consumer = await consumeIn(ctx.queue, { RUN_ID: 'r', CONSUMER_ID: 'early-bird' });
    ctx.cleanups.push(() => consumer.stop('test over'));
    const s = await pollUntil('the waiting consumer in status', async () => (await status()) ?? undefined);
    expect(s.join).toMatchObject({ state: 'pending', waitingFor: 'run-not-created' });
    expect(s.consumers.map((c) => [c.id, c.state])).toEqual([['early-bird', 'idle']]);
  });

  it('a producer a signal stopped before its planned jobs is done, and status says it stopped early', async () => {
    const { q } = await open();
    const run = new RunStore(ctx.redis, ctx.queue, 'r');
    const config = loadProducerConfig({
      REDIS_URL: redisUrl(),
      QUEUE: ctx.queue,
      RUN_ID: 'r',
      PRODUCER_ID: 'p1',
      JOBS: '50',
      PRODUCE_INTERVAL_MS: '20',
    });
    const stop = new AbortController();
    const outcome = runProducer(
      config,
      {
        queues: [q],
        run,
        registry,
        log: quiet,
        host: 'test',
        pid: 1,
        observer: { jobsProduced: () => stop.abort() },
      },
      stop.signal,
    );
    expect(await outcome).toMatchObject({ stoppedEarly: true, lost: false });
    const s = await status();
    expect(s?.producers.list[0]).toMatchObject({ state: 'done', stoppedEarly: true });
    expect(formatRunStatus(s!)).toContain('1 stopped early by a signal');
  });

  it('bug 6: a repeated acknowledgement after the job was trimmed does not count it twice', async () => {
    const { q, run } = await open();
    await run.registerProducer('p1', host, 10_000);
    await run.markInflight(0, 'p1', ['r.p1.0']);
    await q.add('sleep', { run: 'r', producer: 'p1', payload: { value: 0, ms: 0 } }, { jobId: 'r.p1.0' });
    expect(await run.ackAdded(0, 'p1', ['r.p1.0'])).toBe(1);
    await run.recordFinished(0, [{ id: 'r.p1.0', outcome: 'completed', instance: 'p1' }]);
    await q.remove('r.p1.0');
    // ioredis resends the acknowledgement after a dropped reply.
    expect(await run.ackAdded(0, 'p1', ['r.p1.0'])).toBe(0);
    const { join } = await run.producerDone('p1', [1]);
    expect(join.joinedNow).toBe(true);
    expect((await status())?.join.totals).toEqual(ONE_COMPLETED);
  });

  it('an ordinary final failure is counted once, with no false re-open', async () => {
    const { run, producer } = await openWithProducer();
    await producer.put('sleep', { value: 1, ms: 0 });
    await producer.done();
    const worker = new Worker(ctx.queue, () => Promise.reject(new Error('fails')), {
      connection: ctx.redis.duplicate(),
      prefix: queuePrefix(ctx.queue),
    });
    ctx.cleanups.push(async () => {
      await worker.close();
      await worker.disconnect();
    });
    const [job] = await new Promise<[{ id?: string }]>((resolve) =>
      worker.once('failed', (j) => resolve([j!])),
    );
    const r = await run.recordFinished(0, [{ id: job.id!, outcome: 'failed', instance: 'p1' }]);
    expect(r.join.joinedNow).toBe(true);
    expect((await status())?.join.totals).toMatchObject({ failed: 1, completed: 0 });
  });
});

describe('bounded run state', () => {
  const ctx = useTestQueue();

  const queueKeys = async () => {
    const found: string[] = [];
    let cursor = '0';
    do {
      const [next, keys] = await ctx.redis.scan(cursor, 'MATCH', `*${ctx.queue}*`, 'COUNT', 1000);
      cursor = next;
      found.push(...keys);
    } while (cursor !== '0');
    return found.sort();
  };

  /** One run of 20 jobs with KEEP_COMPLETED=0, served by an in-process consumer, joined. */
  const runOnce = async (runId: string, retentionMs: number) => {
    const q = openQueue(ctx.queue, ctx.redis);
    const run = new RunStore(ctx.redis, ctx.queue, runId);
    await run.create(1, 10_000, retentionMs);
    const { instance } = await run.registerProducer('p1', host, 10_000);
    const producer = createProducer({
      run,
      registry,
      producerId: 'p1',
      instance,
      jobOptions: jobOptions({ attempts: 1, backoffMs: 0, keepCompleted: 0, keepFailed: 0 }),
    });
    await producer.putMany(Array.from({ length: 20 }, (_, i) => sleepJob(i)));
    await producer.put('sleep', { value: 99, ms: 0 }, { key: 'once' });
    await producer.done();
    const consumer = await consumeIn(ctx.queue, {
      RUN_ID: runId,
      CONSUMER_ID: `c-${runId}`,
      CONCURRENCY: '4',
    });
    expect((await consumer.exited).state).toBe('cancelled');
    await q.close();
    return run;
  };

  /** Creates a run (which prunes expired runs from the index), then deletes that probe run again. */
  const pruneIndex = async (probe: string) => {
    const run = new RunStore(ctx.redis, ctx.queue, probe);
    await run.create(1, 10_000, 1_000);
    await ctx.redis.del(...(await queueKeys()).filter((k) => k.includes(`:run:${probe}:`)));
    await ctx.redis.zrem(runIndexKey(ctx.queue), probe);
    await ctx.redis.zrem(pendingRunsKey(ctx.queue), probe);
  };

  it('RUN_RETENTION_S: every key a joined run wrote expires, and the keys return to what they were before it', async () => {
    const warm = await runOnce('warm', 1_000); // BullMQ's own queue keys now exist
    await pollUntil('the first run to expire', async () =>
      (await ctx.redis.exists(warm.keys.meta)) ? undefined : true,
    );
    await pruneIndex('probe1');
    const before = await queueKeys();
    const run = await runOnce('r', 1_000);
    expect((await queueKeys()).filter((k) => k.includes(':run:r:')).length).toBeGreaterThan(3);
    const ttl = await ctx.redis.pttl(run.keys.meta);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(1_000);
    await pollUntil('the run to expire', async () =>
      (await ctx.redis.exists(run.keys.meta)) ? undefined : true,
    );
    expect((await queueKeys()).filter((k) => k.includes(':run:r:'))).toEqual([]);
    // The run index forgets it when the next run is created (or joins).
    expect(await ctx.redis.zrange(runIndexKey(ctx.queue), '0', '-1')).toEqual(['r']);
    await pruneIndex('probe2');
    expect(await queueKeys()).toEqual(before);
  });

  it('RUN_RETENTION_S=0 keeps a joined run', async () => {
    const run = await runOnce('kept', 0);
    expect(await ctx.redis.pttl(run.keys.meta)).toBe(-1);
  });
});
