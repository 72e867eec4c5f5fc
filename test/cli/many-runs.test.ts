import type { Redis } from 'ioredis';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { formatRunStatus, readRunStatus } from '../../shared/run/status.js';
import { FAST } from '../helpers/demo.js';
import { exitOf, spawnRole } from '../helpers/processes.js';
import { connect, redisUrl, testQueue } from '../helpers/redis.js';
import { releaseTestQueue } from '../helpers/teardown.js';

/**
 * One queue, many runs: a consumer started for one run takes whatever the queue holds, so its run's
 * status says which runs it served.
 */
describe('one queue, many runs', () => {
  let redis: Redis;
  let queue: string;
  beforeEach(() => {
    redis = connect();
    queue = testQueue();
  });
  afterEach(() => releaseTestQueue(redis, queue));

  it("a run's status names the other runs its consumer served", async () => {
    const base = { ...FAST, REDIS_URL: redisUrl(), QUEUE: queue, JOB_MS: '10', PRODUCE_INTERVAL_MS: '0' };
    const earlier = spawnRole('producer', { ...base, RUN_ID: 'run-b', JOBS: '3' }, { label: 'producer b' });
    expect((await exitOf(earlier)).code, earlier.output()).toBe(0);
    const consumer = spawnRole('consumer', { ...base, RUN_ID: 'run-a', CONSUMER_ID: 'c-a' });
    const producer = spawnRole('producer', { ...base, RUN_ID: 'run-a', JOBS: '2' }, { label: 'producer a' });
    expect((await exitOf(producer)).code, producer.output()).toBe(0);
    expect((await exitOf(consumer)).code, consumer.output()).toBe(0);
    const a = await readRunStatus(redis, queue, 'run-a', 3_000);
    expect(a?.join.state).toBe('joined');
    expect(a?.consumers).toEqual([expect.objectContaining({ id: 'c-a', runs: { 'run-b': 3, 'run-a': 2 } })]);
    expect(formatRunStatus(a!)).toContain('c-a=cancelled (also served run-b: 3 jobs)');
    expect((await readRunStatus(redis, queue, 'run-b', 3_000))?.join.state).toBe('joined');
  });
});
