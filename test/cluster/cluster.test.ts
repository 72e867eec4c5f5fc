import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { createLogger } from '../../shared/logger.js';
import { closeRedis, createRedis, type RedisClient } from '../../shared/redis.js';
import { startRedisCluster, type RedisClusterHandle } from '../../shared/redis-server.js';
import { readRunStatus } from '../../shared/run/status.js';
import { exitOf, killLeftovers, spawnRole, type Spawned } from '../helpers/processes.js';
import { testQueue } from '../helpers/redis.js';

const FAST = { HEARTBEAT_MS: '200', LEASE_MS: '3000', LOCK_MS: '2000', STALLED_INTERVAL_MS: '1000' };

describe('on a real Redis Cluster (3 masters)', () => {
  let cluster: RedisClusterHandle;
  let redis: RedisClient;

  beforeAll(async () => {
    const binary = inject('redisServerBinary');
    if (!binary)
      throw new Error(
        'these tests start a Redis Cluster: install redis-server (apt-get install redis-server)',
      );
    cluster = await startRedisCluster({ binary, masters: 3 });
    redis = createRedis(
      { redisUrl: cluster.url, redisTlsCaFile: undefined },
      createLogger({ level: 'silent', service: 'test' }),
      'test',
    );
  }, 60_000);
  afterAll(async () => {
    if (redis) await closeRedis(redis);
    await cluster?.stop();
  });
  afterEach(async () => {
    expect(await killLeftovers()).toEqual([]);
  });

  it('producers and consumers run a job run to one join with exact totals', async () => {
    const queue = testQueue();
    const env = {
      ...FAST,
      REDIS_URL: cluster.url,
      QUEUE: queue,
      RUN_ID: 'c1',
      PRODUCERS: '2',
      JOBS: '5',
      PRODUCE_INTERVAL_MS: '20',
      JOB_MS: '20',
    };
    const procs: Spawned[] = [
      spawnRole('consumer', { ...env, CONSUMER_ID: 'c1' }),
      spawnRole('consumer', { ...env, CONSUMER_ID: 'c2' }),
      spawnRole('producer', { ...env, PRODUCER_ID: 'p1' }),
      spawnRole('producer', { ...env, PRODUCER_ID: 'p2' }),
    ];
    const exits = await Promise.all(procs.map((p) => exitOf(p, 45_000)));
    expect(exits.map((e) => e.code)).toEqual([0, 0, 0, 0]);
    const status = await readRunStatus(redis, queue, 'c1', 3_000);
    expect(status?.join.state).toBe('joined');
    expect(status?.jobs).toMatchObject({
      produced: 10,
      completed: 10,
      failed: 0,
      unfinished: 0,
      duplicateFinishes: 0,
    });
    expect(status?.consumers.map((c) => c.state)).toEqual(['cancelled', 'cancelled']);
    const joinedLines = procs
      .flatMap((p) => p.output().split('\n'))
      .filter((l) => l.includes('"msg":"run joined"'));
    expect(joinedLines).toHaveLength(1);
  });
});
