import { Redis } from 'ioredis';
import { jobData, produceAll, readContenderEnv } from './common.js';

// The floor: a Redis list. Batches are pipelined LPUSHes; one at a time is one awaited LPUSH each.
const env = readContenderEnv(process.env);
const redis = new Redis(env.redisUrl);
const key = `{${env.queue}}:list`;
const encode = (i: number) => JSON.stringify({ t: Date.now(), data: jobData(env, i) });
await produceAll(env, async (from, count) => {
  if (count === 1) {
    await redis.lpush(key, encode(from));
    return;
  }
  const pipeline = redis.pipeline();
  for (let i = 0; i < count; i++) pipeline.lpush(key, encode(from + i));
  await pipeline.exec();
});
await redis.quit();
