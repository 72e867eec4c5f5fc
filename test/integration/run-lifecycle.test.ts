import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { loadConsumerConfig } from '../../consumers/config.js';
import { startConsumer } from '../../consumers/consumer.js';
import { openRun } from '../../lib/run.js';
import { createProducer } from '../../producers/producer.js';
import { builtinJobs, JobRegistry } from '../../shared/jobs/index.js';
import { callbacksDueKey, pendingRunsKey } from '../../shared/keys.js';
import { createLogger } from '../../shared/logger.js';
import { jobOptions } from '../../shared/queue.js';
import { RunStore } from '../../shared/run/run-store.js';
import { formatRunList, formatRunStatus, readRunStatus } from '../../shared/run/status.js';
import type { CallbackSpec } from '../../shared/run/types.js';
import { connect, pollUntil, redisUrl } from '../helpers/redis.js';
import { useTestQueue } from '../helpers/test-queue.js';

const registry = new JobRegistry(builtinJobs);
const host = { host: 'test', pid: 1 };
const quiet = createLogger({ level: 'silent', service: 'test' });
const keepAll = jobOptions({ attempts: 1, backoffMs: 0, keepCompleted: 1000, keepFailed: 1000 });
const onJoin: CallbackSpec = {
  name: 'on-join',
  type: 'run-report',
  when: 'always',
  attempts: 1,
  backoffMs: 0,
};

/** One regression test per bug in how runs that never join, and runs whose keys are gone, are kept. */
describe('run lifecycle regressions', () => {
  const ctx = useTestQueue();

  /** An in-process consumer without RUN_ID (heartbeat 100 ms), stopped after the test. */
  const plainWorker = async (env: Record<string, string> = {}) => {
    const config = loadConsumerConfig({
      REDIS_URL: redisUrl(),
      QUEUE: ctx.queue,
      HEARTBEAT_MS: '100',
      CONSUMER_ID: 'plain',
      ...env,
    });
    const consumer = await startConsumer(config, {
      redis: connect(),
      registry,
      log: quiet,
      host: 'test',
      pid: 2,
    });
    ctx.cleanups.push(() => consumer.stop('test over'));
    return consumer;
  };

  /** A run of `shards` shards with one producer that registers and reports done at once: it joins. */
  const joinedRun = async (runId: string, retentionMs: number, shards = 1) => {
    const run = new RunStore(ctx.redis, ctx.queue, runId, shards);
    await run.create(1, 10_000, retentionMs, [onJoin]);
    await run.registerProducer('p1', host, 10_000);
    expect((await run.producerDone('p1')).join.joinedNow).toBe(true);
    return run;
  };

  const callbackState = async (runId: string) =>
    (await readRunStatus(ctx.redis, ctx.queue, runId, 10_000))?.callbacks[0]?.state;

  it('bug F7: twenty runs that never join do not keep a worker without RUN_ID from checking a newer run, which joins once its dead producer is lost', async () => {
    // Older runs whose one producer never registers: pending for ever.
    for (let i = 0; i < 20; i++)
      await new RunStore(ctx.redis, ctx.queue, `stuck-${String(i).padStart(2, '0')}`).create(1, 600);
    const run = new RunStore(ctx.redis, ctx.queue, 'young');
    await run.create(1, 600);
    await run.registerProducer('p1', host, 600);
    // p1 dies without a word; a plain worker is the only process attached.
    await plainWorker({ LEASE_MS: '600' });
    await pollUntil('the newer run to join', async () => ((await run.isJoined()) ? true : undefined), 10_000);
    expect((await readRunStatus(ctx.redis, ctx.queue, 'young', 600))?.join.totals).toMatchObject({
      lostProducers: 1,
    });
  });

  it('bug F9: a joined run whose keys expired before its callbacks were delivered leaves the outbox', async () => {
    const run = await joinedRun('gone', 300);
    expect(await ctx.redis.zscore(callbacksDueKey(ctx.queue), 'gone')).not.toBeNull();
    // Nobody delivered its callback before its retention ran out.
    await pollUntil('the run to expire', async () => ((await run.exists()) ? undefined : true));
    await plainWorker();
    await pollUntil(
      'the outbox to forget the run',
      async () => ((await ctx.redis.zcard(callbacksDueKey(ctx.queue))) === 0 ? true : undefined),
      5_000,
    );
  });

  it('bug F9: twenty runs that expired in the outbox do not hide a newer run whose callback is due', async () => {
    const expired = [];
    for (let i = 0; i < 20; i++) expired.push(await joinedRun(`expired-${String(i).padStart(2, '0')}`, 300));
    for (const run of expired)
      await pollUntil(`${run.runId} to expire`, async () => ((await run.exists()) ? undefined : true));
    // The newer run joins; the process that joined it dies before delivering its callback.
    await joinedRun('young', 60_000);
    await plainWorker();
    await pollUntil(
      "the newer run's callback to run",
      async () => ((await callbackState('young')) === 'completed' ? true : undefined),
      10_000,
    );
  });

  it('bug F9: twenty runs in the outbox that this worker cannot deliver (another shard count) do not hide a newer run', async () => {
    for (let i = 0; i < 20; i++) await joinedRun(`other-${String(i).padStart(2, '0')}`, 60_000, 2);
    await joinedRun('young', 60_000);
    await plainWorker();
    await pollUntil(
      "the newer run's callback to run",
      async () => ((await callbackState('young')) === 'completed' ? true : undefined),
      10_000,
    );
    // The runs it cannot deliver stay, for a worker with their shard count.
    expect(await ctx.redis.zcard(callbacksDueKey(ctx.queue))).toBe(20);
  });

  it('bug F9: a pending run whose keys vanished leaves the pending runs', async () => {
    const run = new RunStore(ctx.redis, ctx.queue, 'evicted');
    await run.create(1, 600);
    // Redis evicted or lost the run's record (maxmemory with allkeys-lru, a partial restore...).
    await ctx.redis.del(run.keys.meta);
    await plainWorker({ LEASE_MS: '600' });
    await pollUntil(
      'the pending runs to forget the run',
      async () => ((await ctx.redis.zcard(pendingRunsKey(ctx.queue))) === 0 ? true : undefined),
      5_000,
    );
  });

  /** Keys of run `runId` (its own and its shard's), with their TTLs in ms (-1: none). */
  const runKeysLeft = async (runId: string) => {
    const found: [string, number][] = [];
    let cursor = '0';
    do {
      const [next, keys] = await ctx.redis.scan(
        cursor,
        'MATCH',
        `*${ctx.queue}*:run:${runId}:*`,
        'COUNT',
        1000,
      );
      cursor = next;
      for (const k of keys) found.push([k, await ctx.redis.pttl(k)]);
    } while (cursor !== '0');
    return found;
  };

  /** Run `r` expecting 2 producers: p1 puts one job and reports done, p2 never comes. */
  const runMissingAProducer = async (retentionMs = 60_000) => {
    const run = new RunStore(ctx.redis, ctx.queue, 'r');
    await run.create(2, 600, retentionMs);
    await run.registerProducer('p1', host, 600);
    const producer = createProducer({ run, registry, producerId: 'p1', jobOptions: keepAll });
    await producer.put('sleep', { value: 1, ms: 0 });
    await producer.done();
    return run;
  };

  const abandoned = (runId = 'r') =>
    pollUntil(
      `run ${runId} to be abandoned`,
      async () => {
        const s = await readRunStatus(ctx.redis, ctx.queue, runId, 600);
        return s?.state === 'abandoned' ? s : undefined;
      },
      10_000,
    );

  it('bug F7: a run whose missing producer never registers is abandoned after RUN_ABANDON_S: it leaves the pending runs, status says why, and its keys expire', async () => {
    await runMissingAProducer(2_000);
    await plainWorker({ LEASE_MS: '600', RUN_ABANDON_S: '1' });
    const s = await abandoned();
    expect(s.join).toMatchObject({ state: 'abandoned', waitingFor: null, joinedAt: null });
    expect(s.join.abandonedAt).not.toBeNull();
    expect(s.join.abandonReason).toMatch(/^waited 1 s for 1 of 2 producers, which never registered/);
    expect(formatRunStatus(s)).toContain('abandoned at ');
    expect(formatRunStatus(s)).toContain('waited 1 s for 1 of 2 producers, which never registered');
    expect(formatRunList([s], ctx.queue)).toMatch(/^r\s+abandoned\s/m);
    expect(await ctx.redis.zscore(pendingRunsKey(ctx.queue), 'r')).toBeNull();
    // Every key of the run now has the run's retention, its shard's too, and then expires.
    const keys = await runKeysLeft('r');
    // ('p1': the producer's put bitmap, `puts:<creation>:p1`, which expires with the retention)
    expect(keys.map(([key]) => key.split(':').at(-1)).sort()).toEqual([
      'fenced',
      'meta',
      'p1',
      'produced-by',
      'producers',
    ]);
    for (const [key, ttl] of keys) expect([key, ttl > 0 && ttl <= 2_000]).toEqual([key, true]);
    await pollUntil('every key of the run to expire', async () =>
      (await runKeysLeft('r')).length === 0 ? true : undefined,
    );
  });

  it('the abandon clock restarts when another producer registers', async () => {
    const run = new RunStore(ctx.redis, ctx.queue, 'r');
    await run.create(3, 10_000);
    await run.registerProducer('p1', host, 10_000);
    await run.producerDone('p1');
    expect((await run.tryJoin({ abandonMs: 600 })).reason).toBe('producers-missing');
    // The clock runs for most of its time (this wait is the subject, not a synchronisation)...
    await sleep(450);
    // ...then p2 arrives and finishes: the run made progress, so its clock starts again.
    await run.registerProducer('p2', host, 10_000);
    await run.producerDone('p2');
    const progressed = Date.now();
    const attempt = await pollUntil(
      'the run to be abandoned',
      async () => {
        const a = await run.tryJoin({ abandonMs: 600 });
        return a.reason === 'abandoned-now' ? a : undefined;
      },
      5_000,
      20,
    );
    expect(attempt.joined).toBe(false);
    expect(Date.now() - progressed).toBeGreaterThanOrEqual(550);
    expect((await readRunStatus(ctx.redis, ctx.queue, 'r', 10_000))?.join.abandonReason).toMatch(
      /for 1 of 3 producers/,
    );
  });

  it('a producer arriving after its run was abandoned is refused, saying so', async () => {
    const run = await runMissingAProducer();
    await plainWorker({ LEASE_MS: '600', RUN_ABANDON_S: '1' });
    await abandoned();
    const refused: unknown = await run.registerProducer('p2', host, 600).catch((err: unknown) => err);
    expect(refused).toMatchObject({ name: 'RunError', code: 'abandoned' });
    expect(String(refused)).toMatch(/was abandoned .* start a new run with a new RUN_ID/);
  });

  it('a consumer with RUN_ID leaves once its run is abandoned, and join() rejects saying why', async () => {
    await runMissingAProducer();
    const config = loadConsumerConfig({
      REDIS_URL: redisUrl(),
      QUEUE: ctx.queue,
      RUN_ID: 'r',
      HEARTBEAT_MS: '100',
      LEASE_MS: '600',
      RUN_ABANDON_S: '1',
    });
    const consumer = await startConsumer(config, {
      redis: connect(),
      registry,
      log: quiet,
      host: 'test',
      pid: 2,
    });
    ctx.cleanups.push(() => consumer.stop('test over'));
    const handle = openRun({ runId: 'r', queue: ctx.queue, redis: ctx.redis });
    ctx.cleanups.push(() => handle.close());
    const joining = handle.join({ timeoutMs: 10_000 }).catch((err: unknown) => err);
    expect(await consumer.exited).toMatchObject({ state: 'cancelled', reason: 'run abandoned' });
    expect(await joining).toMatchObject({ name: 'RunError', code: 'abandoned' });
    expect(String(await joining)).toMatch(/was abandoned: waited 1 s for 1 of 2 producers/);
    // A join asked after the fact says the same at once.
    await expect(handle.join({ timeoutMs: 10_000 })).rejects.toMatchObject({ code: 'abandoned' });
  });
});
