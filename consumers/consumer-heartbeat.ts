import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../shared/logger.js';
import { claimDuePendingRuns, RunError, type RunStore } from '../shared/run/run-store.js';
import type { CallbackWaiter } from './callback-waiter.js';
import type { CancelListener } from './cancel-listener.js';
import type { ConsumerConfig } from './config.js';
import type { FinishRecorder } from './finish-recorder.js';

/** Pending runs a worker without RUN_ID checks per heartbeat (the most overdue first). */
const PENDING_RUNS_CHECKED = 20;

export type ConsumerHeartbeatDeps = {
  config: Pick<ConsumerConfig, 'queue' | 'heartbeatMs' | 'runAbandonMs'>;
  /** The consumer's run; null for a worker without one, which checks the queue's pending runs. */
  run: RunStore | null;
  consumerId: string;
  recorder: FinishRecorder;
  cancels: CancelListener;
  callbacks: CallbackWaiter;
  log: Logger;
  /** Refreshes the consumer's record (not once it is ending: the close records its state). */
  saveProgress: () => Promise<unknown>;
  /** Someone asked this consumer to stop taking work (a cancel recorded for it). */
  cancel: (reason: string) => void;
  /** The run can never join as this consumer sees it: leave at once. */
  abort: (reason: string) => void;
};

/**
 * A consumer's heartbeat, until `signal` aborts: keeps its record fresh, catches a missed cancel
 * message, and gives the run a join check even when no job finishes (a producer whose lease ran out
 * is settled here); delivers due join callbacks. A failed beat is logged and the next one tries again.
 */
export async function runConsumerHeartbeat(h: ConsumerHeartbeatDeps, signal: AbortSignal): Promise<void> {
  const seen = { run: false };
  while (!signal.aborted) {
    try {
      if (h.run) {
        if ((await beatForRun(h, h.run, seen)) === 'ended') return;
      } else {
        // A worker without RUN_ID serves every run on its queue: it checks them too, so a run
        // served only by such workers still settles lost producers, reconciles, and joins.
        await checkPendingRuns(h);
        await h.callbacks.deliverDue();
      }
    } catch (err) {
      h.log.warn({ err: String(err) }, 'heartbeat failed');
    }
    await sleep(h.config.heartbeatMs, undefined, { signal }).catch(() => undefined);
  }
}

/** One beat of a consumer with a run; `ended` when it told the consumer to leave. */
async function beatForRun(
  h: ConsumerHeartbeatDeps,
  run: RunStore,
  seen: { run: boolean },
): Promise<'ended' | 'beat'> {
  const { log } = h;
  await h.cancels.catchUp(run);
  const why = await run.cancelReason(h.consumerId);
  if (why) {
    h.cancel(why);
    return 'ended';
  }
  await h.saveProgress();
  if (!seen.run) {
    // A run created after this consumer started may have another shard count: its jobs would sit
    // on queues this consumer never reads.
    const mismatch = await run.checkShards().then(
      () => null,
      (err: unknown) => (err instanceof RunError ? err : null),
    );
    if (mismatch) {
      log.error(mismatch.message);
      h.abort('shard count differs from the run');
      return 'ended';
    }
  }
  const attempt = await run.tryJoin({ abandonMs: h.config.runAbandonMs });
  if (attempt.joinedNow) log.info({ joinedRun: run.runId }, 'run joined');
  if (attempt.reason === 'abandoned-now') logAbandoned(log, run.runId);
  await h.callbacks.deliverDue();
  if (attempt.reason !== 'no-run') seen.run = true;
  else if (seen.run) {
    log.error(
      "the run's state is gone from Redis (restarted without persistence, or flushed): it cannot join; stopping",
    );
    h.abort('run state lost');
    return 'ended';
  }
  return 'beat';
}

/**
 * One join check for each of the queue's pending runs that is due (the most overdue few), skipping
 * other shard counts. A run taken is due again a heartbeat later, so runs that never join cannot
 * crowd out the others.
 */
async function checkPendingRuns(h: ConsumerHeartbeatDeps): Promise<void> {
  const { recorder, config, log } = h;
  const due = await claimDuePendingRuns(
    recorder.redisClient,
    config.queue,
    PENDING_RUNS_CHECKED,
    config.heartbeatMs,
  );
  for (const runId of due) {
    const store = recorder.store(runId);
    const fits = await store.checkShards().then(
      () => true,
      () => false,
    );
    if (!fits) continue;
    await h.cancels.catchUp(store);
    const attempt = await store.tryJoin({ abandonMs: config.runAbandonMs });
    if (attempt.joinedNow) log.info({ joinedRun: runId }, 'run joined');
    if (attempt.reason === 'abandoned-now') logAbandoned(log, runId);
  }
}

function logAbandoned(log: Logger, runId: string): void {
  log.warn(
    { abandonedRun: runId },
    'run abandoned: it waited longer than its abandon time (RUN_ABANDON_S) for producers that never registered',
  );
}
