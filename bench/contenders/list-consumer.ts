import { Redis } from 'ioredis';
import { makeTally, readContenderEnv, report } from './common.js';

// The floor's consumer: CONCURRENCY loops, each on its own connection, BRPOP → parse → count.
const env = readContenderEnv(process.env);
const key = `{${env.queue}}:list`;
const connections = Array.from(
  { length: env.concurrency },
  () => new Redis(env.redisUrl, { maxRetriesPerRequest: null }),
);
let stopping = false;
const tally = makeTally(() => {
  stopping = true;
  for (const c of connections) c.disconnect();
  return Promise.resolve();
});
await Promise.all(connections.map((c) => c.ping()));
for (const c of connections) {
  void (async () => {
    while (!stopping) {
      const item = await c.brpop(key, 1).catch(() => null);
      if (!item) continue;
      const job = JSON.parse(item[1]) as { t: number };
      tally.started(job.t);
      tally.done();
    }
  })();
}
report({ ev: 'ready' });
