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

/**
 * A job running here. `aborted` is why its handler's signal aborted (a cancel, a timeout or a stop);
 * `ended` is set only by a cancel or a timeout, which decide the attempt's outcome (a stop lets the
 * handler decide it). The controller is made only when the handler asks for its signal: most never do.
 * It holds what ending the attempt early needs and nothing else: the registry keeps it for as long
 * as the job runs, and whatever it reaches lives that long too (and costs the garbage collector).
 */
type Running = {
  id: string;
  run: string;
  graceMs: number;
  onRunaway: (jobId: string, still: boolean) => void;
  reject?: (err: Error) => void;
  controller?: AbortController;
  aborted?: Error;
  ended?: Error;
  timer?: NodeJS.Timeout;
  grace?: NodeJS.Timeout;
  settled?: boolean;
  /** Recorded as ended, its handler still running past the grace. */
  runaway?: boolean;
};

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
  private stopReason: Error | undefined;
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
    return r ? this.end(r, new JobCancelledError('aborted while running')) : false;
  }

  /** A run cancelled: aborts every job of it running here. Returns how many. */
  cancelRun(run: string): number {
    this.cancelledRuns.add(run);
    if (this.cancelledRuns.size > MAX_REMEMBERED)
      this.cancelledRuns.delete(this.cancelledRuns.values().next().value!);
    let n = 0;
    for (const r of this.running.values()) {
      if (r.run === run && this.end(r, new JobCancelledError('its run was cancelled'))) n++;
    }
    return n;
  }

  isRunCancelled(run: string): boolean {
    return this.cancelledRuns.has(run);
  }

  /**
   * The consumer is stopping: every running handler's signal aborts with `reason`, and so does any
   * started later. Each attempt still ends with what its handler returns or throws.
   */
  stopAll(reason: Error): void {
    this.stopReason ??= reason;
    for (const r of this.running.values()) abort(r, reason);
  }

  /**
   * Runs `work` with a signal aborted on cancel, on timeout (`timeoutMs` > 0) or on `stopAll`. Once
   * aborted for a cancel or a timeout, the attempt ends with that error as soon as the handler
   * settles, or after `graceMs` if it ignores the signal (it is then listed in `runaway` until it
   * returns, and `onRunaway` is told).
   */
  run<T>(
    job: { id: string; run: string; timeoutMs: number; graceMs: number },
    work: (signal: () => AbortSignal) => Promise<T>,
    onRunaway: (jobId: string, still: boolean) => void,
  ): Promise<T> {
    // Every job passes through here: one record, one promise and the handler's own callbacks.
    // Aborts come from here rather than through AbortSignal.any with a long-lived stop signal, which
    // left a weakly held dependant per job and cost garbage collection on every job.
    const r: Running = { id: job.id, run: job.run, graceMs: job.graceMs, onRunaway };
    this.running.set(job.id, r);
    if (this.stopReason) abort(r, this.stopReason);
    if (job.timeoutMs > 0)
      r.timer = setTimeout(() => this.end(r, new JobTimeoutError(job.timeoutMs)), job.timeoutMs);
    let handler: Promise<T>;
    try {
      handler = Promise.resolve(work(() => signalOf(r)));
    } catch (err) {
      handler = Promise.reject(toError(err));
    }
    return new Promise<T>((resolve, reject) => {
      r.reject = reject;
      handler.then(
        (v) => {
          if (this.settle(r)) return;
          if (r.ended) reject(r.ended);
          else resolve(v);
        },
        (err: unknown) => {
          if (!this.settle(r)) reject(r.ended ?? toError(err));
        },
      );
      // Cancelled or timed out before this point: the grace starts now.
      if (r.ended) this.startGrace(r);
    });
  }

  /** Ends a running job for a cancel or a timeout (the first one wins). Returns true if it did. */
  private end(r: Running, reason: Error): boolean {
    if (r.ended || r.settled) return false;
    r.ended = reason;
    abort(r, reason);
    if (r.reject) this.startGrace(r);
    return true;
  }

  /** The handler has `graceMs` to wind down; after that the attempt ends without it. */
  private startGrace(r: Running): void {
    r.grace = setTimeout(() => {
      if (r.settled) return;
      r.runaway = true;
      this.runaway.add(r.id);
      r.onRunaway(r.id, true);
      this.release(r);
      r.reject!(r.ended!);
    }, r.graceMs);
  }

  /** The handler settled. Returns true if the attempt had already ended without it (a runaway). */
  private settle(r: Running): boolean {
    if (r.runaway) {
      this.runaway.delete(r.id);
      r.onRunaway(r.id, false);
      return true;
    }
    this.release(r);
    return false;
  }

  private release(r: Running): void {
    r.settled = true;
    clearTimeout(r.timer);
    clearTimeout(r.grace);
    // A later attempt of the same job may run here by the time a runaway handler returns.
    if (this.running.get(r.id) === r) this.running.delete(r.id);
  }
}

const toError = (err: unknown): Error => (err instanceof Error ? err : new Error(String(err)));

/** The job's abort signal, made on first use (already aborted if the job was). */
function signalOf(r: Running): AbortSignal {
  if (!r.controller) {
    r.controller = new AbortController();
    if (r.aborted) r.controller.abort(r.aborted);
  }
  return r.controller.signal;
}

function abort(r: Running, reason: Error): void {
  if (r.aborted) return;
  r.aborted = reason;
  r.controller?.abort(reason);
}
