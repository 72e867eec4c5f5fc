import type { Queue } from 'bullmq';
import type { JobData } from '../shared/queue.js';

/** Jobs in BullMQ's lists at one moment. Waiting includes prioritised jobs. */
export type Depth = { waiting: number; active: number; delayed: number; completed: number; failed: number };

/** One shard's BullMQ queue (the queue itself when it is not sharded). */
export type ShardDepth = Depth & { index: number; name: string };

/** A queue's depth: the sum over its shards, and each shard's own. */
export type QueueDepth = { total: Depth; shards: ShardDepth[] };

const STATES = ['waiting', 'prioritized', 'active', 'delayed', 'completed', 'failed'] as const;

/**
 * Reads the counts of every shard of a queue at once (one `getJobCounts` each) and sums them.
 * `queues` is one BullMQ queue per shard, in shard order, as `openQueues` returns them.
 */
export async function readQueueDepth(queues: readonly Queue<JobData>[]): Promise<QueueDepth> {
  const shards = await Promise.all(
    queues.map(async (queue, index): Promise<ShardDepth> => {
      const c = await queue.getJobCounts(...STATES);
      return {
        index,
        name: queue.name,
        waiting: (c.waiting ?? 0) + (c.prioritized ?? 0),
        active: c.active ?? 0,
        delayed: c.delayed ?? 0,
        completed: c.completed ?? 0,
        failed: c.failed ?? 0,
      };
    }),
  );
  const sum = (k: keyof Depth) => shards.reduce((n, s) => n + s[k], 0);
  return {
    total: {
      waiting: sum('waiting'),
      active: sum('active'),
      delayed: sum('delayed'),
      completed: sum('completed'),
      failed: sum('failed'),
    },
    shards,
  };
}
