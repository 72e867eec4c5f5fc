import { describe, expect, it } from 'vitest';
import { RunStore } from '../../shared/run/run-store.js';
import { dashboardUrlOf, exitOf, spawnRole } from '../helpers/processes.js';
import { scrape, value } from '../helpers/prometheus-text.js';
import { pollUntil, redisUrl } from '../helpers/redis.js';
import { useTestQueue } from '../helpers/test-queue.js';
import { openShardedRun } from '../helpers/sharded-run.js';

describe('the dashboard process’s /metrics', () => {
  const ctx = useTestQueue();

  it('serves queue and run metrics from Redis without the dashboard’s login', async () => {
    await new RunStore(ctx.redis, ctx.queue, 'd1').create(2);
    const dashboard = spawnRole('dashboard', {
      REDIS_URL: redisUrl(),
      QUEUE: ctx.queue,
      DASHBOARD_PORT: '0',
      DASHBOARD_HOST: '127.0.0.1',
      DASHBOARD_USER: 'admin',
      DASHBOARD_PASSWORD: 'a-test-password-of-16+',
    });
    const base = await dashboardUrlOf(dashboard);
    const m = await pollUntil('the dashboard to read Redis', async () => {
      const metrics = await scrape(`${base}/metrics`);
      return value(metrics, 'conveyor_redis_up', { service: 'dashboard' }) === 1 ? metrics : undefined;
    });
    expect(value(m, 'conveyor_run_producers_expected', { queue: ctx.queue, run: 'd1' })).toBe(2);
    expect(value(m, 'conveyor_run_joined', { queue: ctx.queue, run: 'd1' })).toBe(0);
    expect(value(m, 'conveyor_queue_jobs', { queue: ctx.queue, state: 'waiting' })).toBe(0);
    expect(value(m, 'process_resident_memory_bytes', { service: 'dashboard' })).toBeGreaterThan(0);
    // The rest of the dashboard still asks for credentials.
    const page = await fetch(`${base}/api/runs`);
    expect(page.status).toBe(401);
    await page.text();

    dashboard.child.kill('SIGTERM');
    expect((await exitOf(dashboard)).code).toBe(0);
  });

  it('SHARDS=3: the queue-wide depth is the sum of its shards, each shard has its own series', async () => {
    const { producer, close } = await openShardedRun(ctx.redis, ctx.queue, 's', 3);
    ctx.cleanups.push(close);
    await producer.putMany([0, 1, 2, 3].map((value) => ({ type: 'sleep', payload: { value, ms: 0 } })));
    await producer.flush();
    const dashboard = spawnRole('dashboard', {
      REDIS_URL: redisUrl(),
      QUEUE: ctx.queue,
      SHARDS: '3',
      DASHBOARD_PORT: '0',
    });
    const base = await dashboardUrlOf(dashboard);
    const m = await pollUntil('the dashboard to read Redis', async () => {
      const metrics = await scrape(`${base}/metrics`);
      return value(metrics, 'conveyor_redis_up', { service: 'dashboard' }) === 1 ? metrics : undefined;
    });
    expect(value(m, 'conveyor_queue_jobs', { queue: ctx.queue, state: 'waiting' })).toBe(4);
    const waiting = ['0', '1', '2'].map((shard) =>
      value(m, 'conveyor_queue_shard_jobs', { queue: ctx.queue, shard, state: 'waiting' }),
    );
    expect(waiting).toEqual([2, 1, 1]);
    const produced = ['0', '1', '2'].map((shard) =>
      value(m, 'conveyor_run_shard_jobs', { queue: ctx.queue, run: 's', shard, state: 'produced' }),
    );
    expect(produced).toEqual([2, 1, 1]);
    dashboard.child.kill('SIGTERM');
    expect((await exitOf(dashboard)).code).toBe(0);
  });
});
