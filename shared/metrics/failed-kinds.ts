import type { Queue } from 'bullmq';
import type { JobData } from '../queue.js';
import type { RedisClient } from '../redis.js';
import { CANCELLED_REASON } from '../run/scripts.js';

/** Failed jobs looked at per shard: the newest this many (a larger failed set is counted in part). */
const MAX_LOOKED_AT = 10_000;
/** How a timed-out attempt's failure reads (the consumer's JobTimeoutError). */
const TIMED_OUT = /^timed out after \d+ ms$/;

/** Why a job is in BullMQ's failed set. */
export type FailedKind = 'cancelled' | 'timed-out' | 'failed';
export type FailedCounts = { cancelled: number; timedOut: number };

const kindOf = (reason: string | null): FailedKind =>
  reason?.startsWith(CANCELLED_REASON) ? 'cancelled' : TIMED_OUT.test(reason ?? '') ? 'timed-out' : 'failed';

/**
 * Which of BullMQ's failed jobs conveyor cancelled and which ran out of time: BullMQ keeps both in its
 * failed set, so its failed count alone makes a cancelled run look like a failing one. A shard's
 * failed set is read only when its count changed, and only jobs not seen before are asked for their
 * reason, so a quiet queue costs nothing beyond the counts already read. Counts cover the jobs still
 * in BullMQ's failed set (KEEP_FAILED trims it), the newest MAX_LOOKED_AT of each shard.
 */
export class FailedKinds {
  /** Per shard: each failed job id looked at, and why it failed. */
  private readonly seen: Map<string, FailedKind>[];
  private readonly lastFailed: number[];
  private perRun = new Map<string, FailedCounts>();
  private all: FailedCounts = { cancelled: 0, timedOut: 0 };

  constructor(
    private readonly redis: RedisClient,
    private readonly queues: readonly Queue<JobData>[],
  ) {
    this.seen = queues.map(() => new Map<string, FailedKind>());
    this.lastFailed = queues.map(() => 0);
  }

  /** Brings the counts up to date, given each shard's failed count just read. */
  async update(failedPerShard: readonly number[]): Promise<void> {
    const changed = await Promise.all(
      this.queues.map(async (q, i) => {
        const failed = failedPerShard[i] ?? 0;
        if (failed === this.lastFailed[i]) return false;
        const ids = await this.redis.zrevrange(q.keys.failed!, 0, MAX_LOOKED_AT - 1);
        const before = this.seen[i]!;
        const fresh = ids.filter((id) => !before.has(id));
        const reasons = await Promise.all(fresh.map((id) => this.redis.hget(q.toKey(id), 'failedReason')));
        const next = new Map<string, FailedKind>();
        for (const id of ids) next.set(id, before.get(id) ?? 'failed');
        fresh.forEach((id, j) => next.set(id, kindOf(reasons[j] ?? null)));
        this.seen[i] = next;
        this.lastFailed[i] = failed;
        return true;
      }),
    );
    if (changed.some(Boolean)) this.recount();
  }

  /** Cancelled and timed-out jobs among the failed ones, the whole queue. */
  get total(): FailedCounts {
    return this.all;
  }

  /** The same for one creation of a run (`idPrefix`, `<run>+<n>`: every job id of it begins so). */
  ofRun(idPrefix: string): FailedCounts {
    return this.perRun.get(idPrefix) ?? { cancelled: 0, timedOut: 0 };
  }

  private recount(): void {
    const perRun = new Map<string, FailedCounts>();
    const all = { cancelled: 0, timedOut: 0 };
    for (const shard of this.seen)
      for (const [id, kind] of shard) {
        if (kind === 'failed') continue;
        const prefix = id.split('+', 2).join('+');
        const run = perRun.get(prefix) ?? { cancelled: 0, timedOut: 0 };
        perRun.set(prefix, run);
        for (const c of [run, all]) c[kind === 'cancelled' ? 'cancelled' : 'timedOut']++;
      }
    this.perRun = perRun;
    this.all = all;
  }
}
