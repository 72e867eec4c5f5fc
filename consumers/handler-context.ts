import type { JobContext } from '../shared/jobs/define.js';
import type { Logger } from '../shared/logger.js';

/**
 * What a handler gets as `ctx`. A class rather than an object literal with getters: every job makes
 * one, and a literal's getters are new functions each time. The signal and the job's logger are
 * made only when the handler reads them; most handlers never do.
 */
export class HandlerContext<R> implements JobContext<R> {
  private jobLog: Logger | undefined;

  constructor(
    readonly jobId: string,
    readonly attempt: number,
    readonly resources: R,
    private readonly signalOf: () => AbortSignal,
    private readonly parentLog: Logger,
  ) {}

  get signal(): AbortSignal {
    return this.signalOf();
  }

  get log(): Logger {
    return (this.jobLog ??= this.parentLog.child({ jobId: this.jobId }));
  }
}
