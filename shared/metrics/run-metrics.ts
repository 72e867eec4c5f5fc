import type { Registry } from 'prom-client';
import type { Logger } from '../logger.js';
import type { RedisClient } from '../redis.js';
import { registerRunGauges } from './run-gauges.js';
import { openRunSnapshots, type MetricsQueue } from './run-snapshot.js';

export type { MetricsQueue } from './run-snapshot.js';

export type RunMetricsOptions = {
  redis: RedisClient;
  /** Queues to report on; a bare name is an unsharded queue (`{ name, shards: 1 }`). */
  queues: readonly (string | MetricsQueue)[];
  /** As the processes use it: a heartbeat older than this shows a producer or consumer as lost. */
  leaseMs: number;
  /** How many of each queue's latest runs get run-level series (older runs drop out). */
  runLimit?: number;
  /** A scrape gives up on Redis after this long (reported as conveyor_redis_up 0). */
  timeoutMs?: number;
  log?: Logger;
  /** Clock for the oldest job's age (ms); injectable for tests. */
  now?: () => number;
};

export type RunMetrics = {
  /** Closes the BullMQ queue handles (not the Redis connection, which the caller owns). */
  close(): Promise<void>;
};

/**
 * Queue- and run-level metrics read from Redis at scrape time, for the dashboard's `/metrics`.
 * Consumers exit after a join, so a run's final totals live in Redis, not in any process: these are
 * the series to alert and report on; the per-process counters are for rates.
 *
 * One scrape makes one read: every metric's collect() joins the same in-flight snapshot (prom-client
 * starts all collects in the same tick), so the cost is one getJobCounts and one oldest-job lookup per
 * shard of each queue plus one readRunStatus per listed run, whatever the number of metrics.
 *
 * A sharded queue (`SHARDS=k`) is k BullMQ queues: `conveyor_queue_jobs` and the oldest job's age are
 * queue-wide (summed, or the oldest of any shard), so dashboards and alerts need not know about shards;
 * the `*_shard_*` series break them down, one shard (`shard="0"`...) per series, always, so a query
 * written for sharded queues also works on an unsharded one (its single shard 0).
 */
export function registerRunMetrics(registry: Registry, opts: RunMetricsOptions): RunMetrics {
  const snapshots = openRunSnapshots({
    redis: opts.redis,
    queues: opts.queues.map((q) => (typeof q === 'string' ? { name: q, shards: 1 } : q)),
    leaseMs: opts.leaseMs,
    runLimit: opts.runLimit ?? 20,
    timeoutMs: opts.timeoutMs ?? 2_000,
    log: opts.log,
    now: opts.now ?? Date.now,
  });
  registerRunGauges({ registry, snapshot: snapshots.read });
  return { close: snapshots.close };
}
