import { describe, expect, it } from 'vitest';
import { formatRunStatus, readRunStatus } from '../../shared/run/status.js';
import { FAST } from '../helpers/demo.js';
import { exitOf, spawnRole } from '../helpers/processes.js';
import { redisUrl } from '../helpers/redis.js';
import { useTestQueue } from '../helpers/test-queue.js';

/**
 * One queue, many runs: a consumer started for one run takes whatever the queue holds, so its run's
 * status says which runs it served.
 */
describe('one queue, many runs', () => {
  const ctx = useTestQueue();

  it("a run's status names the other runs its consumer served", async () => {
    const base = { ...FAST, REDIS_URL: redisUrl(), QUEUE: ctx.queue, JOB_MS: '10', PRODUCE_INTERVAL_MS: '0' };
    const earlier = spawnRole('producer', { ...base, RUN_ID: 'run-b', JOBS: '3' }, { label: 'producer b' });
    expect((await exitOf(earlier)).code, earlier.output()).toBe(0);
    const consumer = spawnRole('consumer', { ...base, RUN_ID: 'run-a', CONSUMER_ID: 'c-a' });
    const producer = spawnRole('producer', { ...base, RUN_ID: 'run-a', JOBS: '2' }, { label: 'producer a' });
    expect((await exitOf(producer)).code, producer.output()).toBe(0);
    expect((await exitOf(consumer)).code, consumer.output()).toBe(0);
    const a = await readRunStatus(ctx.redis, ctx.queue, 'run-a', 3_000);
    expect(a?.join.state).toBe('joined');
    expect(a?.consumers).toEqual([expect.objectContaining({ id: 'c-a', runs: { 'run-b': 3, 'run-a': 2 } })]);
    expect(formatRunStatus(a!)).toContain('c-a=cancelled (also served run-b: 3 jobs)');
    expect((await readRunStatus(ctx.redis, ctx.queue, 'run-b', 3_000))?.join.state).toBe('joined');
  });
});
