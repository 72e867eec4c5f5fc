import BeeQueue from 'bee-queue';
import { jobData, produceAll, readContenderEnv } from './common.js';

// bee-queue producer: saveAll for batches, save() one at a time; no event subscription.
const env = readContenderEnv(process.env);
const queue = new BeeQueue(env.queue, {
  redis: { url: env.redisUrl },
  isWorker: false,
  getEvents: false,
  removeOnSuccess: true,
});
await queue.ready();
await produceAll(env, async (from, count) => {
  if (count === 1) {
    await queue.createJob(jobData(env, from)).retries(2).save();
    return;
  }
  const jobs = Array.from({ length: count }, (_, i) => queue.createJob(jobData(env, from + i)).retries(2));
  const errors = await queue.saveAll(jobs);
  if (errors.size > 0) throw new Error(`${errors.size} jobs failed to save`);
});
await queue.close();
