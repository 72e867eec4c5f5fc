import { Redis } from 'ioredis';
import { createProducer } from '../../producers/producer.js';
import { builtinJobs, JobRegistry } from '../../shared/jobs/index.js';
import { jobOptions } from '../../shared/queue.js';
import { RunStore } from '../../shared/run/run-store.js';
import { produceWithCallers, readContenderEnv } from './common.js';
import { noopJob } from './noop-job.js';

// conveyor through its library, with many concurrent put callers in one process (a server enqueueing
// one job per request): the same run, registration, acknowledgements and done as the producer role.
const env = readContenderEnv(process.env);
const redis = new Redis(env.redisUrl, { maxRetriesPerRequest: null });
const run = new RunStore(redis, env.queue, env.runId);
await run.create(1);
const { instance } = await run.registerProducer(env.producerId, { host: 'bench', pid: process.pid }, 10_000);
const producer = createProducer({
  run,
  registry: new JobRegistry([...builtinJobs, noopJob]),
  producerId: env.producerId,
  instance,
  jobOptions: jobOptions({
    attempts: 3,
    backoffMs: 1_000,
    keepCompleted: env.keepCompleted,
    keepFailed: 10_000,
  }),
  batching: { lingerMs: Number(process.env.PUT_LINGER_MS ?? 0) },
});
await produceWithCallers(env, async (i) => {
  await producer.put('noop', { value: i, ms: 0 });
});
await producer.done();
await redis.quit();
