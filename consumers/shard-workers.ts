import { MetricsTime, Worker, type Job } from 'bullmq';
import { queueShards } from '../shared/keys.js';
import type { Logger } from '../shared/logger.js';
import type { JobData } from '../shared/queue.js';
import type { RedisClient } from '../shared/redis.js';
import { traceAttempts } from './attempt-span.js';
import { withBoundedErrors } from './bounded-error.js';
import type { ConsumerConfig } from './config.js';
import { withEndRecords } from './outcome-records.js';
import type { ResultKeeper } from './result-keeper.js';

export type ShardWorkersDeps = {
  config: Pick<
    ConsumerConfig,
    'queue' | 'shards' | 'concurrency' | 'lockMs' | 'stalledIntervalMs' | 'maxStalled' | 'queueMetrics'
  >;
  redis: RedisClient;
  log: Logger;
  /** The processor for one shard's jobs. */
  processorFor: (shard: number) => (job: Job<JobData>) => Promise<unknown>;
  /** Where a job that did not complete has how it ended kept. */
  results: ResultKeeper;
};

/**
 * One BullMQ Worker per shard, sharing the process's concurrency (at least one slot each). They
 * are built stopped (autorun off): the consumer runs them once it listens for cancels.
 */
export function makeShardWorkers(d: ShardWorkersDeps): Worker<JobData>[] {
  const { config, redis, log } = d;
  const shards = queueShards(config.queue, config.shards);
  const slots = splitConcurrency(config.concurrency, shards.length);
  return shards.map(
    (shard, i) =>
      new Worker<JobData>(
        shard.name,
        withEndRecords(
          withBoundedErrors(traceAttempts(config.queue, d.processorFor(i))),
          (job, outcome, message) => d.results.keepEnd(i, job, outcome, message),
          (job, err) =>
            log.warn({ jobId: job.id, err }, "could not keep the job's failure in its run's results"),
        ),
        {
          connection: redis,
          prefix: shard.prefix,
          concurrency: slots[i]!,
          lockDuration: config.lockMs,
          stalledInterval: config.stalledIntervalMs,
          maxStalledCount: config.maxStalled,
          // Per-minute completed/failed counts for Bull Board's chart (two weeks, a few hundred KB in Redis);
          // off by default because BullMQ then does extra Redis work on every finished job.
          ...(config.queueMetrics ? { metrics: { maxDataPoints: MetricsTime.TWO_WEEKS } } : {}),
          autorun: false,
        },
      ),
  );
}

/** `total` slots over `parts` workers, as evenly as possible, at least one each. */
export function splitConcurrency(total: number, parts: number): number[] {
  return Array.from({ length: parts }, (_, i) =>
    Math.max(1, Math.floor(total / parts) + (i < total % parts ? 1 : 0)),
  );
}
