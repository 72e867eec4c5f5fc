import { describe, expect, it } from 'vitest';
import { startDashboard } from '../../lib/dashboard.js';
import { RunStore } from '../../shared/run/run-store.js';
import { scrape, value } from '../helpers/prometheus-text.js';
import { pollUntil, redisUrl } from '../helpers/redis.js';
import { useTestQueue } from '../helpers/test-queue.js';

/** startDashboard, the library's dashboard: assembled as `conveyor dashboard` is (dashboard/open.ts). */
describe('startDashboard', () => {
  const ctx = useTestQueue();

  it('serves the run metrics at /metrics, as the command does', async () => {
    await new RunStore(ctx.redis, ctx.queue, 'm1').create(2);
    const dashboard = await startDashboard({ redisUrl: redisUrl(), queue: ctx.queue, port: 0 });
    ctx.cleanups.push(() => dashboard.close());
    const m = await pollUntil('the dashboard to read the run', async () => {
      const metrics = await scrape(`${dashboard.url}/metrics`);
      return value(metrics, 'conveyor_redis_up', { service: 'dashboard' }) === 1 ? metrics : undefined;
    });
    expect(value(m, 'conveyor_run_producers_expected', { queue: ctx.queue, run: 'm1' })).toBe(2);
    expect(value(m, 'conveyor_run_joined', { queue: ctx.queue, run: 'm1' })).toBe(0);
    expect(value(m, 'conveyor_queue_jobs', { queue: ctx.queue, state: 'waiting' })).toBe(0);
    await dashboard.close();
    // A second close is the same close.
    await dashboard.close();
  });
});
