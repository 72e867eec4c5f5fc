import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { loadConsumerConfig } from '../../consumers/config.js';
import { startConsumer } from '../../consumers/consumer.js';
import { createProducer } from '../../producers/producer.js';
import { createLogger } from '../../shared/logger.js';
import { builtinJobs, JobRegistry } from '../../shared/jobs/index.js';
import { registerRunMetrics, type RunMetrics } from '../../shared/metrics/run-metrics.js';
import { shardForKey } from '../../shared/keys.js';
import { jobOptions, openQueue } from '../../shared/queue.js';
import { freePort } from '../../shared/redis-server.js';
import { RunStore } from '../../shared/run/run-store.js';
import type { ConsumerRecord } from '../../shared/run/types.js';
import { promtool } from '../helpers/prometheus-server.js';
import { parseMetrics, series, typeOf, value } from '../helpers/prometheus-text.js';
import { useTestQueue } from '../helpers/test-queue.js';
import { pollUntil, redisUrl } from '../helpers/redis.js';
import { openShardedRun } from '../helpers/sharded-run.js';
import { finishAndReport } from '../helpers/finish-jobs.js';

const LEASE_MS = 10_000;

const ctx = useTestQueue();

function consumer(id: string, state: ConsumerRecord['state'], heartbeatAt: number): ConsumerRecord {
  return {
    id,
    host: 'h',
    pid: 1,
    concurrency: 1,
    state,
    jobsDone: 0,
    jobsFailed: 0,
    current: [],
    startedAt: 0,
    heartbeatAt,
  };
}

function collector(
  registry: Registry,
  opts: Partial<Parameters<typeof registerRunMetrics>[1]> = {},
): RunMetrics {
  const m = registerRunMetrics(registry, {
    redis: ctx.redis,
    queues: [ctx.queue],
    leaseMs: LEASE_MS,
    ...opts,
  });
  ctx.cleanups.push(() => m.close());
  return m;
}

describe('run metrics from Redis', () => {
  it('reports queue depth, the oldest job, and each run’s jobs, producers, consumers and join', async () => {
    const run = new RunStore(ctx.redis, ctx.queue, 'r1');
    await run.create(1);
    await run.registerProducer('p1', { host: 'h', pid: 1 }, LEASE_MS);
    const bull = openQueue(ctx.queue, ctx.redis);
    ctx.cleanups.push(() => bull.close());
    const producer = createProducer({
      run,
      registry: new JobRegistry(builtinJobs),
      producerId: 'p1',
      jobOptions: jobOptions({ attempts: 1, backoffMs: 0, keepCompleted: 10, keepFailed: 10 }),
    });
    const ids = await producer.putMany(
      [0, 1, 2].map((value) => ({ type: 'sleep', payload: { value, ms: 0 } })),
    );
    await producer.flush();
    const oldest = await bull.getJob(ids[0]!);
    const [time] = await ctx.redis.time();
    const now = Number(time) * 1000;
    await run.saveConsumer(consumer('c-cancelled', 'cancelled', now));
    await run.saveConsumer(consumer('c-idle', 'idle', now));
    await run.saveConsumer(consumer('c-silent', 'busy', now - 2 * LEASE_MS));
    // Heartbeats are stamped with Redis's clock: this one's last came two leases ago.
    await ctx.redis.zadd(run.keys.beats, now - 2 * LEASE_MS, 'c-silent');

    const registry = new Registry();
    collector(registry, { now: () => oldest!.timestamp + 42_000 });
    let m = await parseMetrics(await registry.metrics());
    expect(value(m, 'conveyor_redis_up')).toBe(1);
    expect(value(m, 'conveyor_queue_jobs', { queue: ctx.queue, state: 'waiting' })).toBe(3);
    expect(value(m, 'conveyor_queue_jobs', { queue: ctx.queue, state: 'active' })).toBe(0);
    expect(value(m, 'conveyor_queue_oldest_job_age_seconds', { queue: ctx.queue })).toBe(42);
    // Per-shard series exist for an unsharded queue too: its one shard, 0.
    expect(value(m, 'conveyor_queue_shard_jobs', { queue: ctx.queue, shard: '0', state: 'waiting' })).toBe(3);
    const r = { queue: ctx.queue, run: 'r1' };
    expect(value(m, 'conveyor_run_shard_jobs', { ...r, shard: '0', state: 'produced' })).toBe(3);
    expect(value(m, 'conveyor_run_jobs', { ...r, state: 'produced' })).toBe(3);
    expect(value(m, 'conveyor_run_jobs', { ...r, state: 'unfinished' })).toBe(3);
    expect(value(m, 'conveyor_run_jobs', { ...r, state: 'completed' })).toBe(0);
    expect(value(m, 'conveyor_producers', { ...r, state: 'running' })).toBe(1);
    expect(value(m, 'conveyor_producers', { ...r, state: 'done' })).toBe(0);
    expect(value(m, 'conveyor_run_producers_expected', r)).toBe(1);
    expect(value(m, 'conveyor_consumers', { ...r, state: 'cancelled' })).toBe(1);
    expect(value(m, 'conveyor_consumers', { ...r, state: 'idle' })).toBe(1);
    expect(value(m, 'conveyor_consumers', { ...r, state: 'lost' })).toBe(1);
    expect(value(m, 'conveyor_consumers', { ...r, state: 'busy' })).toBe(0);
    expect(typeOf(m, 'conveyor_consumer_cancellations_total')).toBe('counter');
    expect(value(m, 'conveyor_consumer_cancellations_total', r)).toBe(1);
    expect(value(m, 'conveyor_run_joined', r)).toBe(0);
    expect(m.conveyor_run_joined_timestamp_seconds?.data ?? []).toHaveLength(0);

    // Finish every job and the producer: the run joins, and the next scrape says so.
    await finishAndReport(ctx.redis, run, 0, [ids[2]!], 'failed');
    await finishAndReport(ctx.redis, run, 0, [ids[0]!, ids[1]!], 'completed');
    const done = await run.producerDone('p1');
    expect(done.join.joined).toBe(true);
    m = await parseMetrics(await registry.metrics());
    expect(value(m, 'conveyor_run_jobs', { ...r, state: 'completed' })).toBe(2);
    expect(value(m, 'conveyor_run_jobs', { ...r, state: 'failed' })).toBe(1);
    expect(value(m, 'conveyor_run_jobs', { ...r, state: 'unfinished' })).toBe(0);
    expect(value(m, 'conveyor_producers', { ...r, state: 'done' })).toBe(1);
    expect(value(m, 'conveyor_run_joined', r)).toBe(1);
    const joinedAt = Number(await ctx.redis.hget(run.keys.meta, 'joinedAt'));
    expect(value(m, 'conveyor_run_joined_timestamp_seconds', r)).toBe(joinedAt / 1000);
  });

  it('a cancelled run: cancelled jobs (removed or aborted) and timed-out ones have their own series', async () => {
    const run = new RunStore(ctx.redis, ctx.queue, 'rc');
    await run.create(1);
    await run.registerProducer('p1', { host: 'h', pid: 1 }, LEASE_MS);
    const producer = createProducer({
      run,
      registry: new JobRegistry(builtinJobs),
      producerId: 'p1',
      jobOptions: jobOptions({ attempts: 1, backoffMs: 0, keepCompleted: 10, keepFailed: 10 }),
    });
    // One job runs out of time, two are running when the run is cancelled, one never starts.
    const long = { type: 'sleep', payload: { value: 0, ms: 60_000 } };
    await producer.putMany([{ ...long, timeoutMs: 200 }, long, long, long]);
    await producer.flush();
    await run.producerDone('p1');
    const consumerRedis = new Redis(redisUrl(), { maxRetriesPerRequest: null });
    ctx.cleanups.push(() => Promise.resolve(consumerRedis.disconnect()));
    const config = loadConsumerConfig({
      REDIS_URL: redisUrl(),
      QUEUE: ctx.queue,
      RUN_ID: 'rc',
      CONSUMER_ID: 'c1',
      CONCURRENCY: '2',
      HEARTBEAT_MS: '100',
    });
    const consumer = await startConsumer(config, {
      redis: consumerRedis,
      registry: new JobRegistry(builtinJobs),
      log: createLogger({ level: 'silent', service: 'test' }),
      host: 'test',
      pid: process.pid,
    });
    ctx.cleanups.push(() => consumer.stop('test over'));
    const bull = openQueue(ctx.queue, ctx.redis);
    ctx.cleanups.push(() => bull.close());
    await pollUntil('one job to time out and two to run', async () => {
      const c = await bull.getJobCounts('failed', 'active');
      return c.failed === 1 && c.active === 2 ? true : undefined;
    });
    expect((await run.cancel({ by: 'a test' })).removed).toBe(1);
    await consumer.exited;
    await pollUntil('the run to join', async () => ((await run.isJoined()) ? true : undefined));

    const registry = new Registry();
    collector(registry);
    const m = await parseMetrics(await registry.metrics());
    const r = { queue: ctx.queue, run: 'rc' };
    const jobs = (state: string) => value(m, 'conveyor_run_jobs', { ...r, state });
    expect(jobs('produced')).toBe(4);
    expect(jobs('cancelled')).toBe(3);
    expect(jobs('failed')).toBe(1);
    expect(jobs('timed-out')).toBe(1);
    expect(jobs('removed')).toBe(0);
    expect(
      jobs('completed') + jobs('failed') + jobs('cancelled') + jobs('removed') + jobs('unfinished'),
    ).toBe(jobs('produced'));
    expect(value(m, 'conveyor_run_shard_jobs', { ...r, shard: '0', state: 'cancelled' })).toBe(3);
  });

  it('a queue over 3 shards: queue-wide sums, the oldest job of any shard, and per-shard queue and run series', async () => {
    const {
      run,
      queues: shards,
      producer,
      close,
    } = await openShardedRun(ctx.redis, ctx.queue, 'r1', 3, {
      leaseMs: LEASE_MS,
    });
    ctx.cleanups.push(close);
    // The oldest job goes to shard 2 (a shard key routes it there), the next six round-robin: 2/2/3.
    const toShard2 = Array.from({ length: 100 }, (_, i) => `k${i}`).find((k) => shardForKey(k, 3) === 2)!;
    await producer.put('sleep', { value: 0, ms: 0 }, { shardKey: toShard2 });
    await producer.flush();
    await sleep(20);
    await producer.putMany([1, 2, 3, 4, 5, 6].map((value) => ({ type: 'sleep', payload: { value, ms: 0 } })));
    await producer.flush();
    const waiting = await Promise.all(shards.map((q) => q.getWaiting()));
    expect(waiting.map((jobs) => jobs.length)).toEqual([2, 2, 3]);
    const oldest = Math.min(...waiting[2]!.map((j) => j.timestamp));
    expect(Math.min(...[...waiting[0]!, ...waiting[1]!].map((j) => j.timestamp))).toBeGreaterThan(oldest);

    const registry = new Registry();
    collector(registry, { queues: [{ name: ctx.queue, shards: 3 }], now: () => oldest + 42_000 });
    let m = await parseMetrics(await registry.metrics());
    const perShard = (name: string, labels: Record<string, string>) =>
      ['0', '1', '2'].map((shard) => value(m, name, { ...labels, shard }));
    expect(value(m, 'conveyor_queue_jobs', { queue: ctx.queue, state: 'waiting' })).toBe(7);
    expect(value(m, 'conveyor_queue_jobs', { queue: ctx.queue, state: 'active' })).toBe(0);
    expect(perShard('conveyor_queue_shard_jobs', { queue: ctx.queue, state: 'waiting' })).toEqual([2, 2, 3]);
    expect(perShard('conveyor_queue_shard_jobs', { queue: ctx.queue, state: 'failed' })).toEqual([0, 0, 0]);
    expect(value(m, 'conveyor_queue_oldest_job_age_seconds', { queue: ctx.queue })).toBe(42);
    const r = { queue: ctx.queue, run: 'r1' };
    expect(value(m, 'conveyor_run_jobs', { ...r, state: 'produced' })).toBe(7);
    expect(perShard('conveyor_run_shard_jobs', { ...r, state: 'produced' })).toEqual([2, 2, 3]);
    expect(perShard('conveyor_run_shard_jobs', { ...r, state: 'unfinished' })).toEqual([2, 2, 3]);

    // Shard 1's jobs finish (one fails) and the producer is done: the run's numbers move on shard 1 only.
    const onShard1 = waiting[1]!.map((j) => j.id!);
    await finishAndReport(ctx.redis, run, 1, onShard1.slice(0, 1), 'failed');
    await finishAndReport(ctx.redis, run, 1, onShard1.slice(1), 'completed');
    await producer.done();
    m = await parseMetrics(await registry.metrics());
    expect(perShard('conveyor_run_shard_jobs', { ...r, state: 'completed' })).toEqual([0, 1, 0]);
    expect(perShard('conveyor_run_shard_jobs', { ...r, state: 'failed' })).toEqual([0, 1, 0]);
    expect(perShard('conveyor_run_shard_jobs', { ...r, state: 'unfinished' })).toEqual([2, 0, 3]);
    expect(value(m, 'conveyor_run_jobs', { ...r, state: 'unfinished' })).toBe(5);
    expect(value(m, 'conveyor_run_joined', r)).toBe(0);
    const lint = promtool(['check', 'metrics'], await registry.metrics());
    expect(lint.output).toBe('');
  });

  it('lists only the latest runs, and passes promtool’s lint', async () => {
    for (const id of ['a', 'b', 'c']) await new RunStore(ctx.redis, ctx.queue, id).create(1);
    const registry = new Registry();
    collector(registry, { runLimit: 2 });
    const text = await registry.metrics();
    const runs = series(await parseMetrics(text), 'conveyor_run_joined', { queue: ctx.queue }).map(
      (s) => s.labels.run,
    );
    expect(runs.sort()).toEqual(['b', 'c']);
    const lint = promtool(['check', 'metrics'], text);
    expect(lint.output).toBe('');
    expect(lint.code).toBe(0);
  });

  it('still answers when Redis does not: conveyor_redis_up 0 and no Redis-backed series', async () => {
    const port = await freePort();
    const dead = new Redis(`redis://127.0.0.1:${port}`, {
      maxRetriesPerRequest: null,
      retryStrategy: () => 1_000,
    });
    dead.on('error', () => undefined);
    ctx.cleanups.push(() => Promise.resolve(dead.disconnect()));
    const registry = new Registry();
    const m = registerRunMetrics(registry, {
      redis: dead,
      queues: [ctx.queue],
      leaseMs: LEASE_MS,
      timeoutMs: 300,
    });
    const started = Date.now();
    const parsed = await parseMetrics(await registry.metrics());
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(value(parsed, 'conveyor_redis_up')).toBe(0);
    expect(parsed.conveyor_queue_jobs?.data ?? []).toHaveLength(0);
    expect(parsed.conveyor_run_jobs?.data ?? []).toHaveLength(0);
    dead.disconnect();
    await m.close();
  });
});
