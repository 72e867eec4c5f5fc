import { hostname } from 'node:os';
import { loadConsumerConfig } from '../consumers/config.js';
import { startConsumer as startConsumerCore, type ConsumerHandle } from '../consumers/consumer.js';
import type { AnyJobDefinition } from '../shared/jobs/define.js';
import { builtinJobs, JobRegistry } from '../shared/jobs/index.js';
import { closeRedis, createRedis, waitUntilReady } from '../shared/redis.js';
import { loggerFor, toEnv, type ConnectionOptions } from './options.js';

export type ConsumerOptions = ConnectionOptions & {
  /**
   * The run whose join stops this consumer. Until then it takes every job on the queue, whatever its
   * run (one queue, many runs); without a run it works until `stop()`.
   */
  runId?: string;
  /** Default `<host>-<pid>`. */
  consumerId?: string;
  /** Jobs at once (default 1). */
  concurrency?: number;
  /** Your job types (the built-in `sleep` and `fetch` are always there). */
  jobs?: readonly AnyJobDefinition[];
};

/**
 * The seed's `consume(q)`: runs jobs until its run joins (or `cancel`/`stop`), then closes its
 * connection. `exited` resolves once everything is released.
 */
export async function startConsumer(opts: ConsumerOptions): Promise<ConsumerHandle> {
  const config = loadConsumerConfig(
    toEnv(opts, { RUN_ID: opts.runId, CONSUMER_ID: opts.consumerId, CONCURRENCY: opts.concurrency }),
  );
  const log = loggerFor(opts, 'consumer').child({
    runId: config.runId ?? null,
    consumerId: config.consumerId,
  });
  const registry = new JobRegistry([...builtinJobs, ...(opts.jobs ?? [])]);
  const redis = createRedis(config, log, `conveyor:consumer:${config.consumerId}`);
  let handle: ConsumerHandle;
  try {
    await waitUntilReady(redis, log);
    handle = await startConsumerCore(config, { redis, registry, log, host: hostname(), pid: process.pid });
  } catch (err) {
    redis.disconnect();
    throw err;
  }
  const exited = handle.exited.then(async (exit) => {
    await closeRedis(redis);
    return exit;
  });
  return {
    id: handle.id,
    exited,
    cancel: async (reason) => (await handle.cancel(reason), exited),
    stop: async (reason) => (await handle.stop(reason), exited),
  };
}
