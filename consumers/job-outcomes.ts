import type { Job, Worker } from 'bullmq';
import type { Logger } from '../shared/logger.js';
import { readJobData, type JobData } from '../shared/queue.js';
import type { ConsumerRecord } from '../shared/run/types.js';
import type { CallbackWaiter } from './callback-waiter.js';
import type { ConsumerObserver } from './consumer.js';
import type { FinishRecorder } from './finish-recorder.js';
import { isCancelReason, isTimeoutReason } from './job-control.js';

export type OutcomeDeps = {
  /** The consumer's record, whose counts this keeps. */
  record: ConsumerRecord;
  recorder: FinishRecorder;
  callbacks: CallbackWaiter;
  observer: ConsumerObserver;
  log: Logger;
};

/**
 * Listens to one shard's worker for what became of each job: counts it in the consumer's record,
 * tells the observer, and reports a final outcome to its run (the finish recorder batches them) or,
 * for a join callback, records its state. A failure BullMQ will retry is not an outcome yet.
 */
export function watchOutcomes(worker: Worker<JobData>, shard: number, deps: OutcomeDeps): void {
  const { observer, log } = deps;
  worker.on('completed', (job) => finished(deps, shard, job, 'completed'));
  worker.on('failed', (job, err) => {
    if (!job) return;
    // BullMQ sets finishedOn only when the job leaves for the failed set; otherwise it will retry.
    const final = Boolean(job.finishedOn);
    if (isCancelReason(err.message)) {
      log.info({ jobId: job.id, reason: err.message }, 'job cancelled');
      finished(deps, shard, job, 'cancelled');
      return;
    }
    if (isTimeoutReason(err.message)) observer.jobTimedOut?.({ id: job.id ?? '?', name: job.name });
    log.warn(
      { jobId: job.id, attempt: job.attemptsMade, final, err: err.message },
      final ? 'job failed' : 'job failed; will retry',
    );
    if (final) finished(deps, shard, job, 'failed');
    else observer.jobRetried?.({ id: job.id ?? '?', name: job.name });
  });
  worker.on('error', (err) => log.warn({ err: err.message, shard }, 'worker error'));
}

function finished(
  { record, recorder, callbacks, observer, log }: OutcomeDeps,
  shard: number,
  job: Job,
  outcome: 'completed' | 'failed' | 'cancelled',
): void {
  if (outcome === 'completed') record.jobsDone++;
  else if (outcome === 'failed') record.jobsFailed++;
  else record.jobsCancelled = (record.jobsCancelled ?? 0) + 1;
  const timedOut = outcome === 'failed' && isTimeoutReason(job.failedReason);
  observer.jobFinished?.({
    id: job.id ?? '?',
    name: job.name,
    outcome,
    durationMs: job.finishedOn && job.processedOn ? job.finishedOn - job.processedOn : 0,
    ...(timedOut ? { timedOut } : {}),
  });
  const data = readJobData(job.data);
  if (data) (record.runs ??= {})[data.run] = (record.runs[data.run] ?? 0) + 1;
  if (data?.afterRun && data.callback) {
    const name = data.callback;
    const store = recorder.store(data.afterRun);
    void store
      .callbackState(name, outcome)
      .then(() => callbacks.settled())
      .then(() => (job.id ? store.countCallback(shard, job.id, outcome) : undefined))
      .catch((err: unknown) => log.warn({ err: String(err), callback: name }, 'callback state not recorded'));
  } else if (data && job.id) recorder.add(data.run, shard, job.id, outcome);
}
