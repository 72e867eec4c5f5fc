import { randomBytes } from 'node:crypto';
import type { Queue } from 'bullmq';
import type { RedisClient } from '../../shared/redis.js';
import type { ConsumerConfig } from '../../consumers/config.js';
import { launchConsumer, type ConsumerClient } from '../../consumers/launch.js';
import { connectionOf } from '../../lib/options.js';
import { openProducer } from '../../lib/producer.js';
import { openRun } from '../../lib/run.js';
import type { JobRegistry } from '../../shared/jobs/registry.js';
import type { Logger } from '../../shared/logger.js';
import type { JobData, RetryPolicy } from '../../shared/queue.js';
import type { RunResult } from '../../shared/run/outcomes.js';

export type GatherDeps = {
  /** For the run's join and results (the producer and a consumer started here open their own). */
  redis: RedisClient;
  queue: Queue<JobData>;
  registry: JobRegistry;
  log: Logger;
  pid: number;
  consumerConfig: Omit<ConsumerConfig, 'runId' | 'consumerId' | 'concurrency'>;
};

/**
 * Puts n `sleep` jobs (values 0..n-1) in a fresh run, then waits for every one and returns one result
 * per job in put order, each with its outcome (as asyncio's `gather(return_exceptions=True)`: a
 * failure takes its slot). With no consumer attached to the queue it starts one in this process
 * (cancelled by the join, like any run's consumers). Built on the library's producer and run handle.
 */
export async function gather(
  n: number,
  jobMs: number,
  retry: RetryPolicy,
  deps: GatherDeps,
): Promise<RunResult[]> {
  const { queue, log } = deps;
  const runId = `gather-${Date.now()}-${randomBytes(3).toString('hex')}`;
  // gather enqueues on the one queue it names, whatever SHARDS says.
  const connection = { ...connectionOf(deps.consumerConfig, log), shards: 1 };
  // The run keeps each job's return value, so results come back in put order once it joins.
  const producer = await openProducer({
    ...connection,
    runId,
    producerId: 'gather',
    attempts: retry.attempts,
    backoffMs: retry.backoffMs,
    keepCompleted: retry.keepCompleted,
    keepFailed: retry.keepFailed,
    collectResults: true,
  });
  let own: ConsumerClient | null = null;
  try {
    const workers = await queue.getWorkersCount().catch(() => 0);
    if (workers === 0)
      own = await launchConsumer(
        {
          ...deps.consumerConfig,
          runId,
          consumerId: `gather-${deps.pid}`,
          concurrency: Math.max(1, n),
          shards: 1,
        },
        { registry: deps.registry, log },
      );
    log.info({ runId, jobs: n, ownConsumer: own !== null }, 'gather: enqueuing');
    await producer.putMany(
      Array.from({ length: n }, (_, i) => ({ type: 'sleep', payload: { value: i, ms: jobMs } })),
    );
    await producer.done();
    const run = openRun({ ...connection, runId, redis: deps.redis });
    await run.join();
    // One slot per put, in put order (only this run's one producer puts, without keys).
    const results = await run.results();
    if (own) await own.exited;
    return results;
  } catch (err) {
    await producer.close();
    await own?.stop('gather failed');
    throw err;
  }
}
