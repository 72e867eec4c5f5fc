import type { Redis } from 'ioredis';
import type { RunStore } from '../../shared/run/run-store.js';
import type { FinishOutcome } from '../../shared/run/types.js';

/**
 * Finishes jobs in BullMQ as a worker's moveToFinished does (out of the wait list, into the completed
 * or failed set, `finishedOn` set), without running them: what a consumer's finish report follows.
 * A cancelled job fails with conveyor's cancel reason.
 */
export async function finishInBullMQ(
  redis: Redis,
  run: RunStore,
  shard: number,
  ids: readonly string[],
  outcome: FinishOutcome,
): Promise<void> {
  const k = run.shardKeys[shard]!;
  const now = Date.now();
  const tx = redis.multi();
  for (const id of ids) {
    tx.lrem(`${k.jobPrefix}wait`, 0, id);
    if (outcome === 'completed') tx.zadd(k.completed, now, id);
    else {
      tx.zadd(k.failed, now, id);
      tx.hset(k.jobPrefix + id, 'failedReason', outcome === 'cancelled' ? 'conveyor: cancelled' : 'failed');
    }
    tx.hset(k.jobPrefix + id, 'finishedOn', now, 'processedOn', now);
  }
  await tx.exec();
}

/** Finishes jobs in BullMQ, then reports them to their run as a consumer does. */
export async function finishAndReport(
  redis: Redis,
  run: RunStore,
  shard: number,
  ids: readonly string[],
  outcome: FinishOutcome,
): ReturnType<RunStore['recordFinished']> {
  await finishInBullMQ(redis, run, shard, ids, outcome);
  return run.recordFinished(
    shard,
    ids.map((id) => ({ id, outcome })),
  );
}
