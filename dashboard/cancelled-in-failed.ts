import type { Queue } from 'bullmq';
import type { JobData } from '../shared/queue.js';
import type { RedisClient } from '../shared/redis.js';
import { CANCELLED_REASON } from '../shared/run/scripts.js';

/** Failed jobs looked at per shard: the newest this many (a larger failed set is counted in part). */
const MAX_LOOKED_AT = 10_000;

/**
 * How many of BullMQ's failed jobs are conveyor's cancelled ones (BullMQ keeps an aborted job in its
 * failed set, with conveyor's cancel mark as its reason), so the depth chart can tell the two apart.
 * A shard's failed set is read only when its count changed, and only jobs not seen before are asked
 * for their reason, so a quiet queue costs nothing beyond the counts the chart reads anyway.
 */
export class CancelledInFailed {
  /** Per shard: each failed job id looked at, and whether it was cancelled. */
  private readonly seen: Map<string, boolean>[];
  private readonly lastFailed: number[];

  constructor(
    private readonly redis: RedisClient,
    private readonly queues: readonly Queue<JobData>[],
  ) {
    this.seen = queues.map(() => new Map<string, boolean>());
    this.lastFailed = queues.map(() => 0);
  }

  /** Cancelled jobs among the failed ones, given each shard's failed count just read. */
  async count(failedPerShard: readonly number[]): Promise<number> {
    await Promise.all(
      this.queues.map(async (q, i) => {
        const failed = failedPerShard[i] ?? 0;
        if (failed === this.lastFailed[i]) return;
        const ids = await this.redis.zrevrange(q.keys.failed!, 0, MAX_LOOKED_AT - 1);
        const before = this.seen[i]!;
        const fresh = ids.filter((id) => !before.has(id));
        const reasons = await Promise.all(fresh.map((id) => this.redis.hget(q.toKey(id), 'failedReason')));
        const next = new Map<string, boolean>();
        for (const id of ids) next.set(id, before.get(id) ?? false);
        fresh.forEach((id, j) => next.set(id, reasons[j]?.startsWith(CANCELLED_REASON) ?? false));
        this.seen[i] = next;
        this.lastFailed[i] = failed;
      }),
    );
    let n = 0;
    for (const shard of this.seen) for (const cancelled of shard.values()) if (cancelled) n++;
    return n;
  }
}
