import { Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { makeTally, readContenderEnv, report } from './common.js';

// Raw BullMQ consumer: a Worker with a no-op processor, the same lock/stall settings as conveyor's.
const env = readContenderEnv(process.env);
const connection = new Redis(env.redisUrl, { maxRetriesPerRequest: null });
const worker = new Worker(
  env.queue,
  // eslint-disable-next-line @typescript-eslint/require-await
  async (job) => {
    tally.started(job.timestamp);
    return job.data as unknown;
  },
  {
    connection,
    prefix: `{${env.queue}}`,
    concurrency: env.concurrency,
    lockDuration: 30_000,
    stalledInterval: 30_000,
    maxStalledCount: 1,
    autorun: false,
  },
);
const tally = makeTally(async () => {
  await worker.close();
  await connection.quit();
});
worker.on('completed', () => tally.done());
worker.on('error', (err) => process.stderr.write(`worker error: ${err.message}\n`));
await worker.waitUntilReady();
void worker.run();
report({ ev: 'ready' });
