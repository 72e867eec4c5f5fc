import { Worker } from 'bullmq';
import { describe, expect, it } from 'vitest';
import { createProducer } from '../../producers/producer.js';
import { builtinJobs, JobRegistry } from '../../shared/jobs/index.js';
import { putJobId, queuePrefix } from '../../shared/keys.js';
import { jobOptions, openQueue } from '../../shared/queue.js';
import { RunError, RunStore } from '../../shared/run/run-store.js';
import { readRunStatus } from '../../shared/run/status.js';
import { connect, pollUntil } from '../helpers/redis.js';
import { openShardedRun } from '../helpers/sharded-run.js';
import { useTestQueue } from '../helpers/test-queue.js';
import { finishAndReport } from '../helpers/finish-jobs.js';

const registry = new JobRegistry(builtinJobs);
const opts = jobOptions({ attempts: 3, backoffMs: 60_000, keepCompleted: 1000, keepFailed: 1000 });
const host = { host: 'test', pid: 1 };

describe('RunStore: the join decision', () => {
  const ctx = useTestQueue();

  /** Run `runId` expecting `expected` producers, with 'p1' registered (lease `leaseMs`). */
  const runWithP1 = async (runId = 'r', expected = 1, leaseMs = 10_000) => {
    const run = new RunStore(ctx.redis, ctx.queue, runId);
    await run.create(expected);
    await run.registerProducer('p1', host, leaseMs);
    return run;
  };
  /** Run 'r' expecting one producer, with 'p1' registered (lease `leaseMs`), and that producer. */
  const openRun = async (leaseMs = 10_000) => {
    const q = openQueue(ctx.queue, ctx.redis);
    ctx.cleanups.push(() => q.close());
    const run = await runWithP1('r', 1, leaseMs);
    const producer = createProducer({ run, registry, producerId: 'p1', jobOptions: opts });
    return { q, run, producer };
  };

  /** The status of run 'r', producers' leases judged by `leaseMs`. */
  const readStatus = (leaseMs = 10_000) => readRunStatus(ctx.redis, ctx.queue, 'r', leaseMs);

  const sleepJob = (value: number) => ({ type: 'sleep', payload: { value, ms: 0 } });

  it('joins exactly once, when every producer is done and every acknowledged job finished', async () => {
    const { run, producer } = await openRun();
    const [a, b] = await producer.putMany([sleepJob(1), sleepJob(2)]);
    expect((await run.tryJoin()).reason).toBe('producers-running');
    const done = await producer.done();
    expect(done.join).toMatchObject({ reason: 'jobs-unfinished', detail: 2, joined: false });
    const first = await finishAndReport(ctx.redis, run, 0, [a!], 'completed');
    expect(first.join.joined).toBe(false);
    const last = await finishAndReport(ctx.redis, run, 0, [b!], 'failed');
    expect(last.join).toMatchObject({ joinedNow: true, joined: true });
    const again = await run.tryJoin();
    expect(again).toMatchObject({ reason: 'joined', joinedNow: false, detail: last.join.detail });
    const status = await readStatus();
    expect(status?.jobs).toMatchObject({ produced: 2, completed: 1, failed: 1, unfinished: 0 });
    expect(status?.join.state).toBe('joined');
    expect(status?.join.totals).toEqual({
      produced: 2,
      completed: 1,
      failed: 1,
      removed: 0,
      cancelled: 0,
      lostProducers: 0,
    });
  });

  it('counts an acknowledged job removed from the queue by hand as removed, so the run can still join', async () => {
    const { q, run, producer } = await openRun();
    const [id] = await producer.putMany([sleepJob(1)]);
    expect((await producer.done()).join.reason).toBe('jobs-unfinished');
    await q.remove(id!);
    // Gone and unreported stays unfinished for the grace a live consumer's report may take.
    expect((await run.tryJoin()).reason).toBe('jobs-unfinished');
    const joined = await pollUntil('the removed job to be counted', async () => {
      const j = await run.tryJoin();
      return j.joined ? j : undefined;
    });
    expect(joined.joinedNow).toBe(true);
    expect((await readStatus())?.jobs).toMatchObject({
      produced: 1,
      removed: 1,
      cancelled: 0,
      completed: 0,
    });
  });

  it('counts a job deleted before its report arrived as the report says, not removed', async () => {
    const { q, run, producer } = await openRun();
    const [id] = await producer.putMany([sleepJob(1)]);
    await producer.done();
    // BullMQ finished the job and someone deleted it; the consumer's batched report is still on its way.
    await q.remove(id!);
    expect((await run.tryJoin()).reason).toBe('jobs-unfinished');
    const report = await run.recordFinished(0, [{ id: id!, outcome: 'completed' }]);
    expect(report).toMatchObject({ counted: 1, duplicates: 0, join: { joinedNow: true } });
    expect((await readStatus())?.jobs).toMatchObject({
      produced: 1,
      completed: 1,
      removed: 0,
      cancelled: 0,
      duplicateFinishes: 0,
    });
  });

  it('of many concurrent join attempts, exactly one reports joining', async () => {
    // Two producers and no jobs: the second producer's done races five independent join checks.
    const race = await runWithP1('race', 2);
    await race.registerProducer('p2', host, 10_000);
    await race.producerDone('p1');
    const others = Array.from({ length: 5 }, () => connect());
    try {
      const attempts = await Promise.all([
        race.producerDone('p2'),
        ...others.map((c) => new RunStore(c, ctx.queue, 'race').tryJoin().then((join) => ({ join }))),
      ]);
      expect(attempts.filter((a) => a.join.joinedNow)).toHaveLength(1);
      // A check that reached Redis before p2's done finds it running; the done's own check comes after.
      expect(attempts[0].join.joined).toBe(true);
      expect(await race.isJoined()).toBe(true);
    } finally {
      others.forEach((c) => c.disconnect());
    }
  });

  it('is held back by a producer that has not registered yet', async () => {
    const run = await runWithP1('r', 2);
    const { join } = await run.producerDone('p1');
    expect(join).toMatchObject({ reason: 'producers-missing', detail: 1, joined: false });
  });

  it('is held back by a job that is being retried', async () => {
    const { q, run, producer } = await openRun();
    const [id] = await producer.putMany([sleepJob(1)]);
    await producer.done();
    // Its first attempt fails; with a long backoff BullMQ holds it in delayed: not terminal.
    const worker = new Worker(ctx.queue, () => Promise.reject(new Error('first attempt fails')), {
      connection: ctx.redis.duplicate(),
      prefix: queuePrefix(ctx.queue),
      autorun: true,
    });
    try {
      await new Promise<void>((resolve) => worker.once('failed', () => resolve()));
    } finally {
      await worker.close();
      await worker.disconnect();
    }
    expect((await run.tryJoin()).reason).toBe('jobs-unfinished');
    expect(await q.getJobState(id!)).toBe('delayed');
  });

  it('marks a producer whose lease ran out as lost, counts what it put, and refuses its later puts', async () => {
    const { run, producer } = await openRun(300);
    const [id] = await producer.putMany([sleepJob(0)]);
    // The producer goes silent (no heartbeat): its lease runs out.
    const lost = await pollUntil('the lease to expire', async () => {
      const j = await run.tryJoin();
      return j.reason === 'jobs-unfinished' ? j : undefined;
    });
    expect(lost.detail).toBe(1);
    const status = await readStatus(300);
    expect(status?.producers).toMatchObject({ lost: 1, running: 0 });
    expect(status?.jobs.produced).toBe(1);
    expect(await run.heartbeatProducer('p1', 300)).toBe('lost');
    // Fenced: a put from the lost instance writes nothing.
    await expect(producer.putMany([sleepJob(1)])).rejects.toMatchObject({ code: 'fenced' });
    expect(await run.unfinished()).toBe(1);
    const fin = await finishAndReport(ctx.redis, run, 0, [id!], 'completed');
    expect(fin.join.joinedNow).toBe(true);
  });

  it('with 3 shards: a lost producer is settled on every shard, and the run joins only when every shard closed', async () => {
    const { run, close } = await openShardedRun(ctx.redis, ctx.queue, 'r', 3, { leaseMs: 300 });
    ctx.cleanups.push(close);
    // The producer put one job on shard 0 and one on shard 2, then died.
    const prefix = await run.idPrefix();
    const job = (seq: number) => ({
      id: putJobId(prefix, 'p1', seq),
      seq,
      name: 'sleep',
      data: JSON.stringify({ run: 'r', producer: 'p1', payload: { value: seq, ms: 0 } }),
    });
    await run.putJobs(0, 'p1', JSON.stringify(opts), [job(0)]);
    await run.putJobs(2, 'p1', JSON.stringify(opts), [job(2)]);
    const lost = await pollUntil('the lease to expire', async () => {
      const j = await run.tryJoin();
      return j.reason === 'jobs-unfinished' ? j : undefined;
    });
    expect(lost.detail).toBe(2);
    let status = await readStatus(300);
    expect(status?.producers).toMatchObject({ lost: 1, running: 0 });
    expect(status?.producers.list[0]?.produced).toBe(2);
    expect(status?.shards.map((sh) => [sh.produced, sh.unfinished, sh.closed])).toEqual([
      [1, 1, false],
      [0, 0, true],
      [1, 1, false],
    ]);
    // One shard finishing is not the run finishing.
    expect((await finishAndReport(ctx.redis, run, 0, [job(0).id], 'completed')).join).toMatchObject({
      reason: 'jobs-unfinished',
      joined: false,
    });
    const last = await finishAndReport(ctx.redis, run, 2, [job(2).id], 'failed');
    expect(last.join.joinedNow).toBe(true);
    status = await readStatus(300);
    expect(status?.join.totals).toEqual({
      produced: 2,
      completed: 1,
      failed: 1,
      removed: 0,
      cancelled: 0,
      lostProducers: 1,
    });
  });

  it('does not declare producers lost for a stretch when no process could reach Redis', async () => {
    const run = new RunStore(ctx.redis, ctx.queue, 'r');
    await run.create(1, 2_000);
    await run.registerProducer('p1', host, 2_000);
    // As after an outage: nothing touched the run for 10 s, so the lease looks 8 s overdue.
    const [sec] = await ctx.redis.time();
    const now = Number(sec) * 1000;
    await ctx.redis.hset(run.keys.meta, 'lastSeenAt', now - 10_000);
    await ctx.redis.zadd(run.keys.leases, now - 8_000, 'p1');
    expect((await run.tryJoin()).reason).toBe('producers-running');
    expect(await run.heartbeatProducer('p1', 2_000)).toBe('running');
  });

  it('reconciles a job BullMQ finished whose consumer died before reporting it', async () => {
    const { q, run, producer } = await openRun();
    const [id] = await producer.putMany([sleepJob(7)]);
    await producer.done();
    // Finish the job in BullMQ directly, as a consumer would, and never report it.
    const job = await q.getJob(id!);
    await ctx.redis.hset(`${job!.queueQualifiedName}:${id!}`, 'finishedOn', Date.now() - 5_000);
    const joined = await pollUntil('the reconciled join', async () => {
      const j = await run.tryJoin();
      return j.joined ? j : undefined;
    });
    expect(joined.joinedNow).toBe(true);
    const status = await readStatus();
    expect(status?.jobs).toMatchObject({ produced: 1, completed: 1, reconciled: 1 });
    // The consumer's late report is recognised, not counted again or called a duplicate.
    const late = await run.recordFinished(0, [{ id: id!, outcome: 'completed' }]);
    expect(late).toMatchObject({ counted: 0, duplicates: 0 });
  });

  it('remembers an idempotency key after BullMQ trimmed its finished job', async () => {
    const { q, run, producer } = await openRun();
    const id = await producer.put('sleep', { value: 1, ms: 0 }, { key: 'order-7' });
    await producer.flush();
    await finishAndReport(ctx.redis, run, 0, [id], 'completed');
    await q.remove(id); // deleted by hand, or trimmed by KEEP_COMPLETED
    expect(await producer.put('sleep', { value: 1, ms: 0 }, { key: 'order-7' })).toBe(id);
    await producer.flush();
    expect(await q.count()).toBe(0);
    expect((await readStatus())?.jobs).toMatchObject({
      produced: 1,
      completed: 1,
      unfinished: 0,
    });
  });

  it('reports acknowledgements a producer saw that Redis lost, instead of hiding them', async () => {
    const run = await runWithP1();
    // The producer saw 5 acknowledged adds; the run (as after a rolled-back restart) holds none.
    await run.producerDone('p1', [5]);
    const status = await readStatus();
    expect(status?.jobs.lostAcks).toBe(5);
    expect(status?.producers.list[0]?.lostAcks).toBe(5);
  });

  it('refuses what a person must fix, with a message that says how', async () => {
    const run = new RunStore(ctx.redis, ctx.queue, 'r');
    await run.create(1);
    await expect(run.create(2)).rejects.toThrow(/created expecting 1 producers; set PRODUCERS=1/);
    await run.registerProducer('p1', host, 10_000);
    await expect(run.registerProducer('p2', host, 10_000)).rejects.toMatchObject({ code: 'full' });
    await run.producerDone('p1');
    await expect(run.registerProducer('p3', host, 10_000)).rejects.toBeInstanceOf(RunError);
    await expect(run.registerProducer('p3', host, 10_000)).rejects.toThrow(/already joined; start a new run/);
  });

  it('rejects an invalid payload before anything reaches Redis', async () => {
    const { q, run, producer } = await openRun();
    await expect(
      producer.putMany([sleepJob(1), { type: 'sleep', payload: { value: 'x', ms: 0 } }]),
    ).rejects.toThrow(/Invalid "sleep" payload at item 1: value:/);
    expect(await q.count()).toBe(0);
    expect(await run.unfinished()).toBe(0);
  });

  it('enqueues one job for repeated puts with the same idempotency key', async () => {
    const { q, producer } = await openRun();
    for (let i = 0; i < 3; i++) await producer.put('sleep', { value: 1, ms: 0 }, { key: 'order-42' });
    await producer.flush();
    expect(await q.count()).toBe(1);
    expect((await readStatus())?.jobs.produced).toBe(1);
  });
});
