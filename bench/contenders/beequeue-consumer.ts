import BeeQueue from 'bee-queue';
import { makeTally, readContenderEnv, report } from './common.js';

// bee-queue consumer: queue.process(concurrency) with a no-op handler, jobs removed on success.
const env = readContenderEnv(process.env);
const queue = new BeeQueue(env.queue, {
  redis: { url: env.redisUrl },
  getEvents: false,
  sendEvents: false,
  removeOnSuccess: true,
});
const tally = makeTally(() => queue.close(5_000));
queue.on('succeeded', () => tally.done());
queue.on('error', (err) => process.stderr.write(`queue error: ${err.message}\n`));
await queue.ready();
queue.process(env.concurrency, (job) => {
  tally.started((job.options as { timestamp: number }).timestamp);
  return Promise.resolve(job.data as unknown);
});
report({ ev: 'ready' });
