import type { RedisClient } from '../redis.js';
import { parseJobId } from '../keys.js';
import { decodeStored, type RunResult, type StoredOutcome } from './outcomes.js';
import type { RunStore } from './run-store.js';
import { CANCELLED_REASON } from './scripts.js';

/** shard -1: not known yet (a number counted by its producer, not seen in any record). */
type Put = { jobId: string; shard: number; producer: string; order: number | string };

/** Producer instances, then put order within each; keyed puts last, in their keys' natural order. */
function comparePuts(a: Put, b: Put): number {
  if (a.producer !== b.producer) {
    if (a.producer === 'keyed' || b.producer === 'keyed') return a.producer === 'keyed' ? 1 : -1;
    return a.producer < b.producer ? -1 : 1;
  }
  if (typeof a.order === 'number' && typeof b.order === 'number') return a.order - b.order;
  return String(a.order).localeCompare(String(b.order), 'en', { numeric: true });
}

/**
 * One entry per put of a run created with collectResults, in put order (per producer instance, the
 * sequence number in its job ids; keyed puts under `keyed`, in key order), each with its outcome.
 *
 * Completed, failed and cancelled jobs are read from the run's results (a consumer keeps each job's
 * value or end there before the job finishes), and jobs cancelled before they started from its
 * cancelled set. A put with neither (its consumer died after BullMQ finished the job, or someone
 * deleted it) is looked up in BullMQ; one gone from there too is `removed`, as many as the run's
 * totals count removed.
 */
export async function readRunResults(redis: RedisClient, store: RunStore): Promise<RunResult[]> {
  const prefix = await store.idPrefix();
  const known = new Map<string, StoredOutcome | { outcome: 'cancelled' }>();
  const puts = new Map<string, Put>();
  const perInstance = new Map<string, number>();
  let removedTotal = 0;
  const add = (jobId: string, shard: number) => {
    if (puts.has(jobId)) return;
    const origin = parseJobId(prefix, jobId);
    if (!origin || origin.kind === 'callback') return;
    puts.set(
      jobId,
      origin.kind === 'keyed'
        ? { jobId, shard, producer: 'keyed', order: origin.key }
        : { jobId, shard, producer: origin.instance, order: origin.seq },
    );
  };
  for (const [shard, k] of store.shardKeys.entries()) {
    const [results, cancelled, keyed, producedBy, removed] = await Promise.all([
      redis.hgetall(k.results),
      redis.smembers(k.cancelled),
      redis.smembers(k.keyed),
      redis.hgetall(k.producedBy),
      redis.hget(k.meta, 'removed'),
    ]);
    removedTotal += Number(removed ?? 0);
    for (const [jobId, raw] of Object.entries(results)) {
      known.set(jobId, decodeStored(raw));
      add(jobId, shard);
    }
    for (const jobId of cancelled) {
      if (!known.has(jobId)) known.set(jobId, { outcome: 'cancelled' });
      add(jobId, shard);
    }
    for (const jobId of keyed) add(jobId, shard);
    for (const [instance, count] of Object.entries(producedBy))
      perInstance.set(instance, (perInstance.get(instance) ?? 0) + Number(count));
  }
  // An instance numbers its puts from 0 (a put whose reply was lost is sent again with its numbers),
  // so the ones the run acknowledged are below its count; their shard is looked up when needed.
  for (const [instance, count] of perInstance)
    for (let seq = 0; seq < count; seq++) add(`${prefix}+${instance}+${seq}`, -1);
  const ordered = [...puts.values()].sort(comparePuts);
  const unknown = ordered.filter((p) => !known.has(p.jobId));
  const fromQueue = await Promise.all(unknown.map((p) => readFinishedJob(redis, store, p)));
  unknown.forEach((p, i) => {
    const found = fromQueue[i];
    if (found) known.set(p.jobId, found);
  });
  const entries: RunResult[] = [];
  let removed = 0;
  for (const put of ordered) {
    const base = { jobId: put.jobId, producer: put.producer };
    const end = known.get(put.jobId);
    if (end) entries.push({ ...base, ...end });
    // Past the run's removed count, a number without a record was never a job (see above).
    else if (removed++ < removedTotal) entries.push({ ...base, outcome: 'removed' });
  }
  return entries;
}

/** A job's outcome from BullMQ's record, or null when it is gone or not finished. */
async function readFinishedJob(redis: RedisClient, store: RunStore, put: Put): Promise<StoredOutcome | null> {
  const shards = put.shard >= 0 ? [store.shardKeys[put.shard]!] : store.shardKeys;
  for (const k of shards) {
    const [finishedOn, failedReason, returnvalue] = await redis.hmget(
      `${k.jobPrefix}${put.jobId}`,
      'finishedOn',
      'failedReason',
      'returnvalue',
    );
    if (finishedOn != null) return outcomeOf(failedReason ?? null, returnvalue ?? null);
  }
  return null;
}

function outcomeOf(failedReason: string | null, returnvalue: string | null): StoredOutcome {
  if (failedReason !== null && failedReason !== '' && (returnvalue === null || returnvalue === 'null'))
    return failedReason.startsWith(CANCELLED_REASON)
      ? { outcome: 'cancelled', error: failedReason }
      : { outcome: 'failed', error: failedReason };
  return { outcome: 'completed', value: returnvalue === null ? null : (JSON.parse(returnvalue) as unknown) };
}
