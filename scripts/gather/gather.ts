import { randomBytes } from 'node:crypto';
import { QueueEvents, type Queue } from 'bullmq';
import { duplicateClient, type RedisClient } from '../../shared/redis.js';
import type { ConsumerConfig } from '../../consumers/config.js';
import { startConsumer } from '../../consumers/consumer.js';
import { createProducer } from '../../producers/producer.js';
import type { JobRegistry } from '../../shared/jobs/registry.js';
import { queuePrefix } from '../../shared/keys.js';
import type { Logger } from '../../shared/logger.js';
import { jobOptions, type JobData, type RetryPolicy } from '../../shared/queue.js';
import { RunStore } from '../../shared/run/run-store.js';

export type GatherDeps = {
  redis: RedisClient;
  queue: Queue<JobData>;
  registry: JobRegistry;
  log: Logger;
  host: string;
  pid: number;
  consumerConfig: Omit<ConsumerConfig, 'runId' | 'consumerId' | 'concurrency'>;
};

/**
 * The seed's `run_async_tasks(n)`: `slow(i)` for i in 0..n-1 as jobs of a fresh run, then
 * `gather`: waits for every one and returns their results in order. With no consumer attached to
 * the queue it starts one in this process (cancelled by the join, like the seed's consumers).
 */
export async function gather(
  n: number,
  jobMs: number,
  retry: RetryPolicy,
  deps: GatherDeps,
): Promise<unknown[]> {
  const { redis, queue, log } = deps;
  const runId = `gather-${Date.now()}-${randomBytes(3).toString('hex')}`;
  const run = new RunStore(redis, queue.name, runId);
  await run.create(1, deps.consumerConfig.leaseMs);
  await run.registerProducer('gather', { host: deps.host, pid: deps.pid }, deps.consumerConfig.leaseMs);
  const eventsConnection = duplicateClient(redis, 'conveyor:gather-events');
  const events = new QueueEvents(queue.name, {
    connection: eventsConnection,
    prefix: queuePrefix(queue.name),
  });
  await events.waitUntilReady();
  try {
    const workers = await queue.getWorkersCount().catch(() => 0);
    const own =
      workers === 0
        ? await startConsumer(
            {
              ...deps.consumerConfig,
              runId,
              consumerId: `gather-${deps.pid}`,
              concurrency: Math.max(1, n),
              // gather reads results back from the one queue it enqueued on
              shards: 1,
            },
            { redis, registry: deps.registry, log, host: deps.host, pid: deps.pid },
          )
        : null;
    log.info({ runId, jobs: n, ownConsumer: own !== null }, 'gather: enqueuing');
    const producer = createProducer({
      queues: [queue],
      run,
      registry: deps.registry,
      producerId: 'gather',
      jobOptions: jobOptions(retry),
    });
    const ids = await producer.putMany(
      Array.from({ length: n }, (_, i) => ({ type: 'sleep', payload: { value: i, ms: jobMs } })),
    );
    await producer.done();
    const results = await Promise.all(
      ids.map(async (id) => {
        const job = await queue.getJob(id);
        if (!job) throw new Error(`job ${id} vanished before it finished`);
        return job.waitUntilFinished(events) as Promise<unknown>;
      }),
    );
    if (own) await own.exited;
    return results;
  } finally {
    await events.close();
    eventsConnection.disconnect();
  }
}
