import { createProducer } from '../../producers/producer.js';
import { builtinJobs } from '../../shared/jobs/index.js';
import { JobRegistry } from '../../shared/jobs/registry.js';
import { jobOptions, openQueues, type ConveyorJobOptions } from '../../shared/queue.js';
import type { RedisClient } from '../../shared/redis.js';
import { RunStore } from '../../shared/run/run-store.js';

/**
 * A run over `shards` shards with one registered in-process producer, `p1`: the run, one BullMQ
 * queue per shard, and the producer. `close` closes the queues (not the connection).
 */
export async function openShardedRun(
  redis: RedisClient,
  queue: string,
  runId: string,
  shards: number,
  opts: { leaseMs?: number; jobOptions?: ConveyorJobOptions } = {},
) {
  const run = new RunStore(redis, queue, runId, shards);
  await run.create(1);
  await run.registerProducer('p1', { host: 'test-host', pid: 1 }, opts.leaseMs ?? 10_000);
  const queues = openQueues(queue, shards, redis);
  const producer = createProducer({
    run,
    registry: new JobRegistry(builtinJobs),
    producerId: 'p1',
    jobOptions:
      opts.jobOptions ?? jobOptions({ attempts: 1, backoffMs: 0, keepCompleted: 100, keepFailed: 100 }),
  });
  return { run, queues, producer, close: () => Promise.all(queues.map((q) => q.close())) };
}
