import { afterAll, beforeAll, inject } from 'vitest';
import { createLogger } from '../../shared/logger.js';
import { closeRedis, createRedis, type RedisClient } from '../../shared/redis.js';
import { startRedisCluster, type RedisClusterHandle } from '../../shared/redis-server.js';

/**
 * A Redis Cluster of 3 masters for the tests of a describe block: started before them (with a
 * client on it), stopped after them. Its `url` and `redis` can be read once the block's tests run.
 */
export function useRedisCluster(): { readonly url: string; readonly redis: RedisClient } {
  let cluster: RedisClusterHandle | undefined;
  let redis: RedisClient | undefined;
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
  const started = (): { cluster: RedisClusterHandle; redis: RedisClient } => {
    if (!cluster || !redis) throw new Error('useRedisCluster: the cluster runs only while its tests do');
    return { cluster, redis };
  };
  return {
    get url() {
      return started().cluster.url;
    },
    get redis() {
      return started().redis;
    },
  };
}
