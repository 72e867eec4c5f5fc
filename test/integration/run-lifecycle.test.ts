import { describe, expect, it } from 'vitest';
import { loadConsumerConfig } from '../../consumers/config.js';
import { startConsumer } from '../../consumers/consumer.js';
import { builtinJobs, JobRegistry } from '../../shared/jobs/index.js';
import { callbacksDueKey, pendingRunsKey } from '../../shared/keys.js';
import { createLogger } from '../../shared/logger.js';
import { RunStore } from '../../shared/run/run-store.js';
import { readRunStatus } from '../../shared/run/status.js';
import type { CallbackSpec } from '../../shared/run/types.js';
import { connect, pollUntil, redisUrl } from '../helpers/redis.js';
import { useTestQueue } from '../helpers/test-queue.js';

const registry = new JobRegistry(builtinJobs);
const host = { host: 'test', pid: 1 };
const quiet = createLogger({ level: 'silent', service: 'test' });
const onJoin: CallbackSpec = {
  name: 'on-join',
  type: 'run-report',
  when: 'always',
  attempts: 1,
  backoffMs: 0,
  keepCompleted: 100,
  keepFailed: 100,
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
});
