import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { jobData, produceAll, readContenderEnv } from './common.js';

// Raw BullMQ producer: Queue.addBulk (or one add at a time) with conveyor's job options and prefix style.
const env = readContenderEnv(process.env);
const connection = new Redis(env.redisUrl, { maxRetriesPerRequest: null });
const queue = new Queue(env.queue, { connection, prefix: `{${env.queue}}` });
const opts = {
  attempts: 3,
  backoff: { type: 'exponential', delay: 1_000 },
  removeOnComplete: { count: env.keepCompleted },
  removeOnFail: { count: 10_000 },
};
await produceAll(env, async (from, count) => {
  if (count === 1) {
    await queue.add('sleep', jobData(env, from), opts);
    return;
  }
  await queue.addBulk(
    Array.from({ length: count }, (_, i) => ({ name: 'sleep', data: jobData(env, from + i), opts })),
  );
});
await queue.close();
await connection.quit();
