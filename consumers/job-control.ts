import { UnrecoverableError } from 'bullmq';
import { CANCELLED_REASON } from '../shared/run/scripts.js';

/** A job cancelled by a person or with its run: it fails for good in BullMQ and counts `cancelled`. */
export class JobCancelledError extends UnrecoverableError {
  constructor(detail: string) {
    super(`${CANCELLED_REASON} (${detail})`);
    this.name = 'JobCancelledError';
  }
}

/** An attempt that ran out of time: it fails like any error, so BullMQ retries it per ATTEMPTS. */
export class JobTimeoutError extends Error {
  constructor(readonly timeoutMs: number) {
    super(`timed out after ${timeoutMs} ms`);
    this.name = 'JobTimeoutError';
  }
}

/** True for a failure reason (BullMQ's `failedReason`, or an error's message) that is conveyor's cancel. */
export function isCancelReason(message: string | undefined): boolean {
  return message?.startsWith(CANCELLED_REASON) ?? false;
}

/** True for a failure reason that is a timeout. */
export function isTimeoutReason(message: string | undefined): boolean {
  return /^timed out after \d+ ms$/.test(message ?? '');
}

type Running = { run: string; controller: AbortController };

/** Cancelled ids remembered; beyond this the oldest are forgotten (the sweep and remove cover them). */
const MAX_REMEMBERED = 100_000;

/**
 * What a consumer knows about cancellation, in memory: job ids and runs cancelled (fed by the run's
 * events channel and by the heartbeat as a backstop), and the jobs it is running, each with its own
 * abort controller. Checking at job start costs no Redis round trip.
 */
export class JobControl {
  private readonly cancelledIds = new Set<string>();
  private readonly cancelledRuns = new Set<string>();
  private readonly running = new Map<string, Running>();
  /** Jobs recorded cancelled or timed out whose handler ignored the signal and is still running. */
  readonly runaway = new Set<string>();

  /** Why this job must not start, or null. */
  refusal(jobId: string, run: string): string | null {
    if (this.cancelledRuns.has(run)) return 'its run was cancelled before it started';
    if (this.cancelledIds.has(jobId)) return 'cancelled before it started';
    return null;
  }

  /** A job cancelled by id: aborts it if it runs here. Returns true if it did. */
  cancelJob(jobId: string): boolean {
    this.cancelledIds.add(jobId);
    if (this.cancelledIds.size > MAX_REMEMBERED)
      this.cancelledIds.delete(this.cancelledIds.values().next().value!);
    const r = this.running.get(jobId);
    if (!r || r.controller.signal.aborted) return false;
    r.controller.abort(new JobCancelledError('aborted while running'));
    return true;
  }

  /** A run cancelled: aborts every job of it running here. Returns how many. */
  cancelRun(run: string): number {
    this.cancelledRuns.add(run);
    if (this.cancelledRuns.size > MAX_REMEMBERED)
      this.cancelledRuns.delete(this.cancelledRuns.values().next().value!);
    let n = 0;
    for (const r of this.running.values()) {
      if (r.run !== run || r.controller.signal.aborted) continue;
      r.controller.abort(new JobCancelledError('its run was cancelled'));
      n++;
    }
    return n;
  }

  isRunCancelled(run: string): boolean {
    return this.cancelledRuns.has(run);
  }

  /**
   * Runs `work` with a signal aborted on cancel, on timeout (`timeoutMs` > 0) or when `stopSignal`
   * aborts. Once aborted for a cancel or a timeout, the attempt ends with that error as soon as the
   * handler settles, or after `graceMs` if it ignores the signal (it is then listed in `runaway`
   * until it returns, and `onRunaway` is told).
   */
  async run<T>(
    job: { id: string; run: string; timeoutMs: number; graceMs: number; stopSignal: AbortSignal },
    work: (signal: AbortSignal) => Promise<T>,
    onRunaway: (jobId: string, still: boolean) => void,
  ): Promise<T> {
    const controller = new AbortController();
    this.running.set(job.id, { run: job.run, controller });
    const timer =
      job.timeoutMs > 0
        ? setTimeout(() => controller.abort(new JobTimeoutError(job.timeoutMs)), job.timeoutMs)
        : undefined;
    let grace: NodeJS.Timeout | undefined;
    const handler = Promise.resolve().then(() => work(AbortSignal.any([controller.signal, job.stopSignal])));
    try {
      return await new Promise<T>((resolve, reject) => {
        handler.then(
          (v) => (controller.signal.aborted ? reject(controller.signal.reason as Error) : resolve(v)),
          (err: unknown) =>
            reject(
              controller.signal.aborted
                ? (controller.signal.reason as Error)
                : err instanceof Error
                  ? err
                  : new Error(String(err)),
            ),
        );
        controller.signal.addEventListener(
          'abort',
          () => {
            grace = setTimeout(() => {
              this.runaway.add(job.id);
              onRunaway(job.id, true);
              const done = () => {
                this.runaway.delete(job.id);
                onRunaway(job.id, false);
              };
              handler.then(done, done);
              reject(controller.signal.reason as Error);
            }, job.graceMs);
          },
          { once: true },
        );
      });
    } finally {
      clearTimeout(timer);
      clearTimeout(grace);
      this.running.delete(job.id);
    }
  }
}
