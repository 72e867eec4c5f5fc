import type { Queue } from 'bullmq';
import type { Logger } from '../logger.js';
import { openQueues, type JobData } from '../queue.js';
import type { RedisClient } from '../redis.js';
import { listRuns, readRunStatus, type RunStatus } from '../run/status.js';
import { FailedKinds, type FailedCounts } from './failed-kinds.js';

/** A queue to report on, and how many BullMQ queues it is spread over (its `SHARDS`). */
export type MetricsQueue = { name: string; shards: number };

/** What one scrape read of a queue and its latest runs. */
export type QueueSnapshot = {
  queue: string;
  /** Summed over the shards: the queue-wide numbers. */
  counts: Record<string, number>;
  /** Each shard's own counts, in shard order (one entry for an unsharded queue). */
  shardCounts: Record<string, number>[];
  /** The oldest waiting job of any shard. */
  oldestAgeSeconds: number;
  runs: RunStatus[];
  /** Cancelled and timed-out jobs of each listed run still in BullMQ's failed set, by run id. */
  failedKinds: Map<string, FailedCounts>;
};

/** The latest snapshot of every queue, or null when Redis could not be read in time. */
export type ReadSnapshot = () => Promise<QueueSnapshot[] | null>;

export type RunSnapshotOptions = {
  redis: RedisClient;
  queues: readonly MetricsQueue[];
  leaseMs: number;
  runLimit: number;
  timeoutMs: number;
  log?: Logger;
  now: () => number;
};

export type RunSnapshots = {
  read: ReadSnapshot;
  /** Closes the BullMQ queue handles (not the Redis connection). Safe to call twice. */
  close: () => Promise<void>;
};

/** One queue's BullMQ handles (one per shard) and what is known of its failed jobs. */
type QueueHandles = { name: string; shards: Queue<JobData>[]; kinds: FailedKinds };

/**
 * Reads the queues and their runs from Redis for the metrics. Callers that ask while a read is in
 * flight join it, so a scrape whose collects all start in the same tick costs one read.
 */
export function openRunSnapshots(opts: RunSnapshotOptions): RunSnapshots {
  // A queue named twice is read once, with the shards of its last entry.
  const byName = new Map(opts.queues.map((q) => [q.name, q]));
  const handles = [...byName.values()].map(({ name, shards }): QueueHandles => {
    // Connection trouble already shows as conveyor_redis_up 0; without a listener BullMQ prints it.
    const onError = (message: string) =>
      opts.log?.debug({ err: message, queue: name }, 'metrics queue handle error');
    const queues = openQueues(name, shards, opts.redis, onError);
    return { name, shards: queues, kinds: new FailedKinds(opts.redis, queues) };
  });

  let pending: Promise<QueueSnapshot[] | null> | undefined;
  const read = (): Promise<QueueSnapshot[] | null> =>
    (pending ??= withTimeout(Promise.all(handles.map((h) => readQueue(h, opts))), opts.timeoutMs)
      .catch((err: unknown) => {
        opts.log?.warn(
          { err: err instanceof Error ? err.message : String(err) },
          'metrics: reading queues and runs from Redis failed',
        );
        return null;
      })
      .finally(() => {
        pending = undefined;
      }));

  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= Promise.all(handles.flatMap((h) => h.shards).map((q) => q.close())).then(() => undefined));
  return { read, close };
}

/** One getJobCounts and one oldest-job lookup per shard, and one readRunStatus per listed run. */
async function readQueue(
  { name, shards, kinds }: QueueHandles,
  opts: RunSnapshotOptions,
): Promise<QueueSnapshot> {
  const [shardCounts, oldest, runIds] = await Promise.all([
    Promise.all(shards.map((q) => q.getJobCounts())),
    Promise.all(shards.map((q) => q.getJobs(['waiting'], 0, 0, true))),
    listRuns(opts.redis, name, opts.runLimit),
  ]);
  const [statuses] = await Promise.all([
    Promise.all(runIds.map((id) => readRunStatus(opts.redis, name, id, opts.leaseMs))),
    kinds.update(shardCounts.map((c) => c.failed ?? 0)),
  ]);
  const runs = statuses.filter((s): s is RunStatus => s !== null);
  const counts: Record<string, number> = {};
  for (const c of shardCounts)
    for (const [state, n] of Object.entries(c)) counts[state] = (counts[state] ?? 0) + n;
  const firsts = oldest.flatMap((jobs) => jobs.slice(0, 1).map((j) => j.timestamp));
  return {
    queue: name,
    counts,
    shardCounts,
    oldestAgeSeconds: firsts.length ? Math.max(0, opts.now() - Math.min(...firsts)) / 1000 : 0,
    runs,
    failedKinds: new Map(runs.map((r) => [r.runId, kinds.ofRun(r.idPrefix ?? `${r.runId}+`)])),
  };
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`Redis did not answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
