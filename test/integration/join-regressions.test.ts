import { Worker } from 'bullmq';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { loadConsumerConfig } from '../../consumers/config.js';
import { startConsumer } from '../../consumers/consumer.js';
import { loadProducerConfig } from '../../producers/config.js';
import { createProducer } from '../../producers/producer.js';
import { openProducerClient } from '../../producers/open.js';
import { runProducer } from '../../producers/run-producer.js';
import { defineJob } from '../../shared/jobs/define.js';
import { builtinJobs, JobRegistry } from '../../shared/jobs/index.js';
import {
  bullKeyPrefix,
  pendingRunsKey,
  putJobId,
  queuePrefix,
  queueShards,
  runIndexKey,
} from '../../shared/keys.js';
import { createLogger } from '../../shared/logger.js';
import { jobOptions, openQueue, openShardQueue } from '../../shared/queue.js';
import { deliverCallbacks } from '../../shared/run/callbacks.js';
import { RunError, RunStore } from '../../shared/run/run-store.js';
import { putJobsLua } from '../../shared/run/scripts.js';
import { formatRunStatus, readRunStatus } from '../../shared/run/status.js';
import { connect, pollUntil, redisUrl } from '../helpers/redis.js';
import { useTestQueue } from '../helpers/test-queue.js';
import { finishAndReport } from '../helpers/finish-jobs.js';

const registry = new JobRegistry(builtinJobs);
const keepAll = jobOptions({ attempts: 1, backoffMs: 0, keepCompleted: 1000, keepFailed: 1000 });
const KEEP_ALL_JSON = JSON.stringify(keepAll);
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

/**
 * A job type 'flaky' whose first run fails and whose later runs wait until `release()`: a job that
 * can be put back to work while the test holds its second run. `runs()` counts its runs.
 */
function gatedFlakyJob() {
  let runs = 0;
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const flaky = defineJob({
    name: 'flaky',
    schema: z.strictObject({}),
    handler: async () => {
      if (++runs === 1) throw new Error('first run fails');
      await gate;
      return 'ok';
    },
  });
  return { jobs: new JobRegistry([...builtinJobs, flaky]), release, runs: () => runs };
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

  it('bug 2: a finish reported after the job was deleted counts once', async () => {
    const { q, run, producer } = await openWithProducer();
    // The job runs, someone deletes it, and only then does the consumer's report arrive.
    const id = await producer.put('sleep', { value: 1, ms: 0 });
    await q.remove(id);
    const report = await run.recordFinished(0, [{ id, outcome: 'completed' }]);
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

  it('bug 3: a producer restarted with the same id gets new job ids and its first incarnation is fenced', async () => {
    const { q, run } = await open();
    const first = await run.registerProducer('p1', host, 10_000);
    const before = createProducer({ run, registry, producerId: 'p1', ...first, jobOptions: keepAll });
    const firstIds = await before.putMany([sleepJob(0), sleepJob(1)]);

    // The container restarts: same hostname, same pid, same default PRODUCER_ID.
    const second = await run.registerProducer('p1', host, 10_000);
    expect(second.incarnation).toBe(2);
    const after = createProducer({ run, registry, producerId: 'p1', ...second, jobOptions: keepAll });
    const secondIds = await after.putMany([sleepJob(0), sleepJob(1)]);
    expect(secondIds.filter((id) => firstIds.includes(id))).toEqual([]);
    expect(await q.count()).toBe(4);
    const { state } = await after.done();
    expect(state).toBe('done');
    expect(await run.unfinished()).toBe(4);
    expect((await status())?.producers.list[0]).toMatchObject({ id: 'p1', produced: 4, incarnation: 2 });
    // The first incarnation is fenced: a late put of its writes nothing.
    await expect(before.put('sleep', { value: 2, ms: 0 })).rejects.toMatchObject({ code: 'fenced' });
    expect(await q.count()).toBe(4);
  });

  it('bug 4: a job retried after the run counted it is re-opened, and the run joins only after its new outcome', async () => {
    const flaky = gatedFlakyJob();
    const { jobs, release } = flaky;
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
    expect(flaky.runs()).toBe(2);
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
    await open(3_000);
    // The run gives up on the producer just before its done() arrives (a slow final flush).
    class LateRun extends RunStore {
      override async producerDone(...args: Parameters<RunStore['producerDone']>) {
        await ctx.redis.zadd(this.keys.leases, 0, 'p1');
        await this.tryJoin();
        return super.producerDone(...args);
      }
    }
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
      {
        open: () =>
          openProducerClient(config, {
            registry,
            log: quiet,
            runStore: (redis, queue, runId, shards) => new LateRun(redis, queue, runId, shards),
          }),
        log: quiet,
      },
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
    await open();
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
        open: () => openProducerClient(config, { registry, log: quiet }),
        log: quiet,
        observer: { jobsProduced: () => stop.abort() },
      },
      stop.signal,
    );
    expect(await outcome).toMatchObject({ stoppedEarly: true, lost: false });
    const s = await status();
    expect(s?.producers.list[0]).toMatchObject({ state: 'done', stoppedEarly: true });
    expect(formatRunStatus(s!)).toContain('1 stopped early by a signal');
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
    const r = await run.recordFinished(0, [{ id: job.id!, outcome: 'failed' }]);
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
    await run.create(1, 10_000, retentionMs, [], '', null, { completed: 0, failed: 0 });
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
    const after = await queueKeys();
    expect({
      extra: after.filter((k) => !before.includes(k)),
      missing: before.filter((k) => !after.includes(k)),
    }).toEqual({ extra: [], missing: [] });
    expect(after).toEqual(before);
  });

  it('RUN_RETENTION_S=0 keeps a joined run', async () => {
    const run = await runOnce('kept', 0);
    expect(await ctx.redis.pttl(run.keys.meta)).toBe(-1);
  });
});

/** One regression test per finding of the second adversarial trial (real faults, real Redis). */
describe('join protocol regressions: exact by construction', () => {
  const ctx = useTestQueue();
  const status = (runId = 'r') => readRunStatus(ctx.redis, ctx.queue, runId, 10_000);

  const producerIn = async (
    runId: string,
    opts: { shards?: number; producerId?: string; retentionMs?: number } = {},
  ) => {
    const run = new RunStore(ctx.redis, ctx.queue, runId, opts.shards ?? 1);
    await run.create(1, 10_000, opts.retentionMs ?? 60_000, [], '', null, { completed: 1000, failed: 1000 });
    const registered = await run.registerProducer(opts.producerId ?? 'p1', host, 10_000);
    const producer = createProducer({
      run,
      registry,
      producerId: opts.producerId ?? 'p1',
      ...registered,
      jobOptions: keepAll,
    });
    return { run, producer };
  };

  /** Put jobs `seqs` of instance p1 of run 'r', as its producer sends them to `putJobs`. */
  const putBatch = (prefix: string, seqs: number[]) =>
    seqs.map((seq) => ({
      id: putJobId(prefix, 'p1', seq),
      seq,
      name: 'sleep',
      data: JSON.stringify({ run: 'r', producer: 'p1', payload: { value: seq, ms: 0 } }),
    }));

  /** How many of `ids` BullMQ holds on the queue's only shard. */
  const stored = async (ids: readonly string[]) => {
    const prefix = bullKeyPrefix(ctx.queue);
    const pipe = ctx.redis.pipeline();
    for (const id of ids) pipe.exists(prefix + id);
    return (await pipe.exec())!.filter(([, n]) => n === 1).length;
  };

  it('F1: a batch that overtakes the one before it (a NOSCRIPT fallback delayed) loses neither', async () => {
    const { run } = await producerIn('r');
    const [conn, other] = [connect(), connect()];
    ctx.cleanups.push(() => Promise.all([conn.quit(), other.quit()]));
    // The producer's connection: its NOSCRIPT fallback (an EVAL) is held until the test lets it go.
    let fellBack!: () => void;
    const fallbackSent = new Promise<void>((r) => (fellBack = r));
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    const sendEval = conn.eval.bind(conn);
    conn.eval = (async (...args: Parameters<typeof conn.eval>) => {
      fellBack();
      await released;
      return sendEval(...args);
    }) as typeof conn.eval;
    const own = new RunStore(conn, ctx.queue, 'r');
    const producer = createProducer({ run: own, registry, producerId: 'p1', jobOptions: keepAll });
    await other.script('FLUSH'); // a restart or failover emptied the cache
    const first = producer.putMany([0, 1, 2].map((i) => sleepJob(i)));
    await fallbackSent; // batch 1 was refused with NOSCRIPT; its EVAL is on its way
    await other.script('LOAD', putJobsLua); // another process reloads the script meanwhile
    const second = await producer.putMany([3, 4, 5].map((i) => sleepJob(i))); // batch 2 runs first
    release();
    const resolved = [...(await first), ...second];
    expect(await stored(resolved)).toBe(6);
    expect((await status())?.jobs.produced).toBe(6);
    expect(await run.unfinished()).toBe(6);
  });

  it('F2: cancelling a job on shard 1 cancels it although shard 0 has closed', async () => {
    const { run, producer } = await producerIn('r', { shards: 2 });
    // Round robin: two jobs on shard 0, two on shard 1.
    const ids = await producer.putMany([0, 1, 2, 3].map((i) => sleepJob(i)));
    await producer.done();
    const onShard = (i: number) => ids.filter((_, n) => n % 2 === i);
    await finishAndReport(ctx.redis, run, 0, onShard(0), 'completed');
    expect((await status())?.shards.map((s) => s.closed)).toEqual([true, false]);
    for (const id of onShard(1))
      expect(await run.cancelJob(id)).toMatchObject({ outcome: 'removed', shard: 1 });
    expect(await run.isJoined()).toBe(true);
    expect((await status())?.join.totals).toMatchObject({ produced: 4, completed: 2, cancelled: 2 });
  });

  it('F3: a failed job retried with fresh attempt counters is re-opened, and the run waits for it', async () => {
    const flaky = gatedFlakyJob();
    const { jobs, release } = flaky;
    const q = openQueue(ctx.queue, ctx.redis);
    ctx.cleanups.push(() => q.close());
    const run = new RunStore(ctx.redis, ctx.queue, 'r');
    await run.create(2, 10_000);
    await run.registerProducer('p1', host, 10_000);
    await run.registerProducer('p2', host, 10_000);
    const producer = createProducer({ run, registry: jobs, producerId: 'p1', jobOptions: keepAll });
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
    // BullMQ's public retry, with the counters the consumer used to read reset.
    await (await q.getJob(id))!.retry('failed', { resetAttemptsMade: true, resetAttemptsStarted: true });
    await pollUntil('the retried job to run', () => Promise.resolve(flaky.runs() === 2 ? true : undefined));
    // The last producer finishes while the retried job runs: the run must wait for it.
    expect((await run.producerDone('p2')).join.joined).toBe(false);
    expect((await status())?.jobs).toMatchObject({ reopened: 1, failed: 0, unfinished: 1 });
    release();
    await pollUntil('the join', async () => ((await run.isJoined()) ? true : undefined));
    expect((await status())?.join.totals).toMatchObject({ produced: 1, completed: 1, failed: 0 });
  });

  it('F4: a job retried after its run expired writes nothing back, and the run id used again starts clean', async () => {
    const q = openQueue(ctx.queue, ctx.redis);
    ctx.cleanups.push(() => q.close());
    const { run, producer } = await producerIn('r', { retentionMs: 300 });
    const id = await producer.put('sleep', { value: 1, ms: 0 });
    await producer.done();
    await finishAndReport(ctx.redis, run, 0, [id], 'failed');
    expect(await run.isJoined()).toBe(true);
    await pollUntil('the run to expire', async () =>
      (await ctx.redis.exists(run.keys.meta)) ? undefined : true,
    );
    // Someone retries the failed job; a consumer takes it and reports it.
    const consumer = await consumeIn(ctx.queue, { CONSUMER_ID: 'plain' });
    ctx.cleanups.push(() => consumer.stop('test over'));
    await (await q.getJob(id))!.retry('failed');
    await pollUntil('the retried job to complete', async () =>
      (await q.getJobState(id)) === 'completed' ? true : undefined,
    );
    await consumer.stop('test over');
    const keys = await ctx.redis.keys(`*:conveyor:run:r:*`);
    const ttls = await Promise.all(keys.map((k) => ctx.redis.pttl(k)));
    expect(keys.filter((_, i) => ttls[i] === -1)).toEqual([]);
    // The same run id again: new ids, exact totals.
    const again = await producerIn('r');
    const [a] = await again.producer.putMany([sleepJob(2)]);
    expect(a).not.toBe(id);
    await again.producer.done();
    await finishAndReport(ctx.redis, again.run, 0, [a!], 'completed');
    expect((await status())?.join.totals).toMatchObject({ produced: 1, completed: 1, failed: 0 });
  });

  it('F5: a run id used again after its retention, with the same producer id, stores and runs every put', async () => {
    const first = await producerIn('nightly', { retentionMs: 200 });
    const old = await first.producer.putMany([0, 1, 2].map((i) => sleepJob(i)));
    await first.producer.done();
    await finishAndReport(ctx.redis, first.run, 0, old, 'completed');
    await pollUntil('the run to expire', async () =>
      (await ctx.redis.exists(first.run.keys.meta)) ? undefined : true,
    );
    // BullMQ still keeps the first night's completed jobs.
    expect(await stored(old)).toBe(3);
    const second = await producerIn('nightly');
    const ids = await second.producer.putMany([0, 1, 2].map((i) => sleepJob(i)));
    expect(ids.filter((id) => old.includes(id))).toEqual([]);
    expect(await stored(ids)).toBe(3);
    expect((await status('nightly'))?.jobs).toMatchObject({ produced: 3, unfinished: 3 });
  });

  it('F5: job ids are unique across runs, keys and producers (run "a" key "p.0" and run "a.k" producer "p")', async () => {
    const a = await producerIn('a');
    const ak = await producerIn('a.k', { producerId: 'p' });
    const keyed = await a.producer.put('sleep', { value: 1, ms: 0 }, { key: 'p.0' });
    const plain = await ak.producer.put('sleep', { value: 2, ms: 0 });
    expect(keyed).not.toBe(plain);
    expect(await stored([keyed, plain])).toBe(2);
    expect((await status('a'))?.jobs.produced).toBe(1);
    expect((await status('a.k'))?.jobs.produced).toBe(1);
  });

  it('F5: a run id used again after its retention gets join callbacks of its own', async () => {
    const q = openQueue(ctx.queue, ctx.redis);
    ctx.cleanups.push(() => q.close());
    for (const round of [1, 2]) {
      const run = new RunStore(ctx.redis, ctx.queue, 'cb');
      const onJoin = { name: 'on-join', type: 'sleep', when: 'always' as const, attempts: 1, backoffMs: 0 };
      await run.create(1, 10_000, 200, [{ ...onJoin, payload: { round } }]);
      await run.registerProducer('p1', host, 10_000);
      expect((await run.producerDone('p1')).join.joinedNow).toBe(true);
      expect(await deliverCallbacks(run, [q])).toBe(1);
      await pollUntil('the run to expire', async () =>
        (await ctx.redis.exists(run.keys.meta)) ? undefined : true,
      );
    }
    // The first callback job is still in the queue (no consumer ran it): the second is a job of its own.
    const jobs = await q.getJobs(['waiting']);
    const payloads = jobs.map((j) => (j.data.payload as { payload: { round: number } }).payload.round);
    expect(payloads.sort()).toEqual([1, 2]);
  });

  it('soak finding: a cancelled run still runs its join callback', async () => {
    const onJoin = {
      name: 'on-join',
      type: 'run-report',
      when: 'always' as const,
      attempts: 1,
      backoffMs: 0,
    };
    const q = openQueue(ctx.queue, ctx.redis);
    ctx.cleanups.push(() => q.close());
    const run = new RunStore(ctx.redis, ctx.queue, 'r');
    await run.create(1, 10_000, 60_000, [onJoin]);
    await run.registerProducer('p1', host, 10_000);
    const producer = createProducer({ run, registry, producerId: 'p1', jobOptions: keepAll });
    await producer.putMany([sleepJob(1), sleepJob(2)]);
    // A worker that hears the cancel; the queue is paused so that it takes nothing before.
    await q.pause();
    const consumer = await consumeIn(ctx.queue, { CONSUMER_ID: 'plain' });
    ctx.cleanups.push(() => consumer.stop('test over'));
    await run.cancel();
    await producer.done();
    expect(await run.isJoined()).toBe(true);
    await q.resume();
    // It runs the callback: it used to refuse it as a job of the cancelled run, and a RUN_ID
    // consumer then waited for it for ever.
    const s = await pollUntil('the callback to end', async () => {
      const st = await status();
      return st?.callbacks[0]?.state === 'completed' || st?.callbacks[0]?.state === 'failed' ? st : undefined;
    });
    expect(s.callbacks.map((c) => [c.name, c.state])).toEqual([['on-join', 'completed']]);
    expect(s.join.totals).toMatchObject({ produced: 2, cancelled: 2 });
  });

  it('soak finding: a run id used again after a cancelled run is not cancelled with it', async () => {
    const consumer = await consumeIn(ctx.queue, { CONSUMER_ID: 'plain' });
    ctx.cleanups.push(() => consumer.stop('test over'));
    const first = await producerIn('x', { retentionMs: 200 });
    await first.producer.put('sleep', { value: 1, ms: 60_000 });
    await first.run.cancel(); // the plain worker remembers that run "x" was cancelled
    await first.producer.done();
    await pollUntil('the cancelled run to join', async () =>
      (await first.run.isJoined()) ? true : undefined,
    );
    await pollUntil('the run to expire', async () =>
      (await ctx.redis.exists(first.run.keys.meta)) ? undefined : true,
    );
    const again = await producerIn('x');
    await again.producer.put('sleep', { value: 2, ms: 0 });
    await again.producer.done();
    await pollUntil('the new run to join', async () => ((await again.run.isJoined()) ? true : undefined));
    expect((await status('x'))?.join.totals).toMatchObject({ produced: 1, completed: 1, cancelled: 0 });
  });

  it('F6: jobs a consumer finished but never reported are counted from BullMQ, then trimmed to KEEP_COMPLETED', async () => {
    const run = new RunStore(ctx.redis, ctx.queue, 'r');
    await run.create(1, 10_000, 60_000, [], '', null, { completed: 0, failed: 0 });
    await run.registerProducer('p1', host, 10_000);
    const keepNone = jobOptions({ attempts: 1, backoffMs: 0, keepCompleted: 0, keepFailed: 0 });
    const producer = createProducer({ run, registry, producerId: 'p1', jobOptions: keepNone });
    const ids = await producer.putMany(Array.from({ length: 20 }, (_, i) => sleepJob(i)));
    await producer.done();
    // A consumer that dies with its reports buffered: BullMQ finishes the jobs, nobody tells the run.
    const worker = new Worker(ctx.queue, () => Promise.resolve('done'), {
      connection: ctx.redis.duplicate(),
      prefix: queuePrefix(ctx.queue),
    });
    ctx.cleanups.push(async () => {
      await worker.close();
      await worker.disconnect();
    });
    const reconciled = new RunStore(ctx.redis, ctx.queue, 'r', 1, {
      reconcileGraceMs: 0,
      reconcileIntervalMs: 0,
    });
    await pollUntil('the run to join', async () => ((await reconciled.tryJoin()).joined ? true : undefined));
    expect((await status())?.join.totals).toMatchObject({ produced: 20, completed: 20, removed: 0 });
    // Counted, then trimmed to the run's keep (0): BullMQ keeps none of them.
    expect(await stored(ids)).toBe(0);
    expect(await ctx.redis.zcard(run.shardKeys[0]!.completed)).toBe(0);
  });

  it('F8: with two shards an idempotency key is accepted once per run, and key with shardKey is refused', async () => {
    const { producer } = await producerIn('r', { shards: 2 });
    const ids = new Set<string>();
    for (let i = 0; i < 3; i++) ids.add(await producer.put('sleep', { value: 7, ms: 0 }, { key: 'order-7' }));
    expect(ids.size).toBe(1);
    await expect(
      producer.put('sleep', { value: 7, ms: 0 }, { key: 'order-7', shardKey: 'customer-2' }),
    ).rejects.toThrow(/key and shardKey cannot be combined/);
    expect((await status())?.jobs.produced).toBe(1);
  });

  it('N4: a put sent again after its reply was lost resolves though its instance was fenced in between (it was stored)', async () => {
    const { run } = await producerIn('r');
    const prefix = await run.idPrefix();
    const batch = putBatch(prefix, [0, 1]);
    expect(await run.putJobs(0, 'p1', KEEP_ALL_JSON, batch)).toEqual({ acknowledged: 2, storedBefore: 0 });
    // The reply was lost; before the resend arrives the producer restarts, and the run's next check
    // fences the first instance.
    await run.registerProducer('p1', host, 10_000);
    await run.tryJoin();
    expect(await ctx.redis.sismember(run.shardKeys[0]!.fenced, 'p1')).toBe(1);
    expect(await run.putJobs(0, 'p1', KEEP_ALL_JSON, batch)).toEqual({ acknowledged: 0, storedBefore: 2 });
    // Anything new from the fenced instance is still refused, writing nothing.
    const [next] = putBatch(prefix, [2]);
    await expect(run.putJobs(0, 'p1', KEEP_ALL_JSON, [batch[1]!, next!])).rejects.toMatchObject({
      code: 'fenced',
    });
    expect(await stored([next!.id])).toBe(0);
    expect((await status())?.jobs.produced).toBe(2);
  });

  it("soak finding: a put sent again later than the run's retention after it, while the run is pending, is answered stored", async () => {
    const { run } = await producerIn('r', { retentionMs: 300 });
    const prefix = await run.idPrefix();
    const batch = putBatch(prefix, [0, 1]);
    expect(await run.putJobs(0, 'p1', KEEP_ALL_JSON, batch)).toEqual({ acknowledged: 2, storedBefore: 0 });
    // Its reply was lost to a Redis restart; the resend comes once more than the retention has passed
    // (the retention counts from the join, and this run has not joined).
    await new Promise((r) => setTimeout(r, 600));
    expect(await run.putJobs(0, 'p1', KEEP_ALL_JSON, batch)).toEqual({ acknowledged: 0, storedBefore: 2 });
    expect((await status())?.jobs.produced).toBe(2);
  });

  it('soak finding: a job retried on a shard that closed before its run joined is re-opened, and the run waits for it', async () => {
    const { run, producer } = await producerIn('r', { shards: 2 });
    // Round robin: the first job on shard 0, the second on shard 1.
    const [first, second] = await producer.putMany([sleepJob(0), sleepJob(1)]);
    await finishAndReport(ctx.redis, run, 0, [first!], 'failed');
    await producer.done();
    // Shard 0 has nothing open and closes; shard 1 still waits for its job, so the run has not joined.
    expect(await run.tryJoin()).toMatchObject({ joined: false, reason: 'jobs-unfinished' });
    expect(await ctx.redis.hexists(run.shardKeys[0]!.meta, 'closedAt')).toBe(1);
    // An operator retries the failed job (Bull Board's button): the consumer that takes it asks the run.
    const q = openShardQueue(queueShards(ctx.queue, 2)[0]!, ctx.redis);
    ctx.cleanups.push(() => q.close());
    await (await q.getJob(first!))!.retry('failed');
    expect(await run.reopen(0, first!)).toBe('reopened');
    await finishAndReport(ctx.redis, run, 1, [second!], 'completed');
    expect(await run.tryJoin()).toMatchObject({ joined: false, reason: 'jobs-unfinished' });
    // Its report empties the last shard, and joins the run.
    expect((await finishAndReport(ctx.redis, run, 0, [first!], 'completed')).join.joinedNow).toBe(true);
    expect((await status())?.join.totals).toMatchObject({ produced: 2, completed: 2, failed: 0 });
  });

  it('a re-open announced by a consumer that died before its shard heard of it is applied by the next join check', async () => {
    const { run, producer } = await producerIn('r', { shards: 2 });
    const [first, second] = await producer.putMany([sleepJob(0), sleepJob(1)]);
    await finishAndReport(ctx.redis, run, 0, [first!], 'failed');
    await finishAndReport(ctx.redis, run, 1, [second!], 'completed');
    const q = openShardQueue(queueShards(ctx.queue, 2)[0]!, ctx.redis);
    ctx.cleanups.push(() => q.close());
    await (await q.getJob(first!))!.retry('failed');
    // The consumer that took the retried job announced it in the run (what announceReopen writes)
    // and died before telling shard 0.
    await ctx.redis.hincrby(run.keys.meta, 'reopens:0', 1);
    await ctx.redis.hset(run.keys.meta, 'reopen:0:1', first!);
    // Every job has a counted outcome, yet the run does not join past the job running again.
    const { join } = await producer.done();
    expect(join).toMatchObject({ joined: false, reason: 'jobs-unfinished' });
    expect((await status())?.jobs).toMatchObject({ reopened: 1, failed: 0, unfinished: 1 });
    expect((await finishAndReport(ctx.redis, run, 0, [first!], 'completed')).join.joinedNow).toBe(true);
    expect((await status())?.join.totals).toMatchObject({ produced: 2, completed: 2, failed: 0 });
  });

  it('put options that conveyor does not carry out (delay, priority, lifo) are refused, not dropped', async () => {
    const { producer } = await producerIn('r');
    for (const opts of [{ delay: 1_000 }, { priority: 3 }, { lifo: true }])
      await expect(producer.put('sleep', { value: 1, ms: 0 }, opts as never)).rejects.toThrow(
        /unknown put option/,
      );
    expect((await status())?.jobs.produced).toBe(0);
  });
});
