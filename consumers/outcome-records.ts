import { UnrecoverableError, type Job } from 'bullmq';
import { isCancelReason } from './job-control.js';

/** Keeps how a job ended in its run's results; a no-op for a run that keeps none. */
export type KeepEnd = (job: Job, outcome: 'failed' | 'cancelled', message: string) => Promise<void>;

/**
 * The processor with a job's last failure kept in its run's results before BullMQ fails it, so
 * `results()` gives every put a place (a failed job with its message, a cancelled one as cancelled)
 * and the run cannot join before the record is there. An attempt that will be retried keeps nothing.
 * A record that cannot be written does not change how the job fails (results() then reads the
 * failure from BullMQ while the job is kept there).
 */
export function withEndRecords<T>(
  processor: (job: Job<T>) => Promise<unknown>,
  keepEnd: KeepEnd,
  onError: (job: Job<T>, err: unknown) => void,
) {
  return async (job: Job<T>): Promise<unknown> => {
    try {
      return await processor(job);
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      const last = err instanceof UnrecoverableError || job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
      if (last)
        await keepEnd(job, isCancelReason(message) ? 'cancelled' : 'failed', message).catch((e: unknown) =>
          onError(job, e),
        );
      throw err;
    }
  };
}
