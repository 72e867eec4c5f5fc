import { randomUUID } from 'node:crypto';
import type { Queue } from 'bullmq';
import { callbackJobId, shardForKey } from '../keys.js';
import { jobOptions, type JobData } from '../queue.js';
import type { RunStore } from './run-store.js';
import { underRun } from '../tracing/run-trace.js';
import type { CallbackSpec } from './types.js';

/**
 * Join callbacks, delivered exactly once through an outbox.
 *
 * The join script marks the run's callbacks due in the same step that joins the run (its own slot),
 * and puts the run in the queue's outbox. Any process then delivers them: the joining one at once,
 * every consumer's heartbeat as a backstop. A deliverer claims the run (a lease, so two live
 * processes do not add at the same moment), and for each pending callback:
 *
 * 1. reads the callback's mark on the shard that will hold its job;
 * 2. with no mark, adds the job under its deterministic id `<run>+<n>@<name>` (BullMQ ignores an add
 *    whose id exists), then sets the mark;
 * 3. records the callback delivered in the run.
 *
 * A crash between any two steps leaves the callback pending; the next deliverer repeats the steps.
 * Repeating cannot make a second job: while the first job is in the queue BullMQ ignores the add,
 * and a job can only leave the queue (trimmed or removed after it finished) once a consumer started
 * it, and a consumer marks it before its handler runs, so the next deliverer sees the mark and adds
 * nothing. What it does not survive: someone deleting the job by hand before it started while its
 * deliverer is between steps 2 and 3 (then it is added again), and a claim that outlives its lease
 * by more than a whole run of the callback job (a process frozen for that long mid-delivery).
 */

/** How many failed job ids a callback's payload names; `failedJobsMore` counts the rest. */
export const FAILED_IDS_IN_PAYLOAD = 100;
const CLAIM_MS = 5_000;

/** What a callback job receives as its payload. */
export type CallbackPayload = {
  run: string;
  callback: string;
  totals: { produced: number; completed: number; failed: number; removed: number; lostProducers: number };
  failedJobIds: string[];
  failedJobsMore: number;
  payload: unknown;
};

export type DeliveryStep = 'claimed' | 'added' | 'marked' | 'delivered';

/** The shard a callback's job lives on (always the same one, so its id deduplicates). */
export function callbackShard(idPrefix: string, name: string, shards: number): number {
  return shardForKey(callbackJobId(idPrefix, name), shards);
}

/**
 * Delivers the run's due callbacks, if any. Returns how many this call recorded delivered.
 * `queues`: the run's queue, one BullMQ queue per shard. `onStep` lets tests stop a process between
 * steps.
 */
export async function deliverCallbacks(
  store: RunStore,
  queues: readonly Queue<JobData>[],
  opts: {
    token?: string;
    /** How long a claim keeps other deliverers off (a crashed deliverer's claim runs out after it). */
    claimMs?: number;
    onStep?: (step: DeliveryStep, name: string) => void | Promise<void>;
  } = {},
): Promise<number> {
  const token = opts.token ?? randomUUID();
  const claim = await store.claimCallbacks(token, opts.claimMs ?? CLAIM_MS);
  if (!claim) return 0;
  await opts.onStep?.('claimed', '');
  const idPrefix = await store.idPrefix();
  const totals = JSON.parse(claim.totals) as CallbackPayload['totals'];
  let failed: { ids: string[]; more: number } | undefined;
  let delivered = 0;
  for (const name of claim.pending) {
    const spec = claim.callbacks.find((c) => c.name === name);
    if (!spec) continue;
    const shard = callbackShard(idPrefix, name, queues.length);
    const queue = queues[shard];
    if (!queue) throw new RangeError(`shard ${shard} of ${queues.length}`);
    if (!(await store.callbackMark(shard, name, 'check'))) {
      failed ??= await failedJobIds(store, idPrefix, totals.failed);
      const payload: CallbackPayload = {
        run: store.runId,
        callback: name,
        totals,
        failedJobIds: failed.ids,
        failedJobsMore: failed.more,
        payload: spec.payload ?? null,
      };
      await queue.add(spec.type, callbackData(store.runId, name, payload), {
        ...callbackOptions(idPrefix, spec),
        ...(await underRun(store)),
      });
      await opts.onStep?.('added', name);
      await store.callbackMark(shard, name, 'added');
      await opts.onStep?.('marked', name);
    }
    await store.callbackState(name, 'delivered');
    delivered++;
    await opts.onStep?.('delivered', name);
  }
  return delivered;
}

function callbackData(runId: string, name: string, payload: CallbackPayload): JobData {
  return { run: runId, producer: `callback:${name}`, payload, afterRun: runId, callback: name };
}

/** No removeOnComplete/removeOnFail: BullMQ would trim the run's uncounted jobs too (RunStore.countCallback). */
function callbackOptions(idPrefix: string, spec: CallbackSpec) {
  return { jobId: callbackJobId(idPrefix, spec.name), ...jobOptions(spec) };
}

/** Ids of the run's failed jobs still in BullMQ's failed sets (trimmed ones are only counted). */
async function failedJobIds(
  store: RunStore,
  idPrefix: string,
  failedTotal: number,
): Promise<{ ids: string[]; more: number }> {
  const redis = store.client;
  const ids: string[] = [];
  // A put's job id is `<prefix>+...` or `<prefix>=...`: unique to this creation of the run.
  const prefix = idPrefix;
  for (const k of store.shardKeys) {
    let cursor = '0';
    do {
      const [next, entries] = await redis.zscan(
        k.failed,
        cursor,
        'MATCH',
        `${escapeGlob(prefix)}*`,
        'COUNT',
        1_000,
      );
      cursor = next;
      for (let i = 0; i < entries.length && ids.length < FAILED_IDS_IN_PAYLOAD; i += 2) {
        const id = entries[i]!;
        const c = id[prefix.length];
        if (c === '+' || c === '=') ids.push(id);
      }
    } while (cursor !== '0' && ids.length < FAILED_IDS_IN_PAYLOAD);
  }
  ids.sort();
  return { ids, more: Math.max(0, failedTotal - ids.length) };
}

function escapeGlob(s: string): string {
  return s.replace(/[*?[\]\\]/g, '\\$&');
}
