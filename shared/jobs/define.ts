import type { z } from 'zod';
import type { Logger } from '../logger.js';

/** What a handler gets besides its payload. */
export type JobContext<R> = {
  jobId: string;
  /** 1 on the first try, 2 on the first retry... */
  attempt: number;
  /**
   * Aborted when the job is cancelled, when its attempt runs out of time, or when the consumer is
   * forced to stop; long handlers should honour it (one that ignores it keeps running after the job
   * was recorded cancelled: see `CANCEL_GRACE_MS`).
   */
  signal: AbortSignal;
  log: Logger;
  /** What `createResources` made, once per consumer process (an HTTP agent, a DB pool...). */
  resources: R;
};

/**
 * One job type: its name, the schema its payload must satisfy (checked by the producer before it
 * enqueues, and again by the consumer before it runs), and the handler that does the work.
 */
export type JobDefinition<P = unknown, Result = unknown, R = unknown> = {
  name: string;
  schema: z.ZodType<P>;
  handler: (payload: P, ctx: JobContext<R>) => Promise<Result>;
  /** How long one attempt may run (ms) unless the put says otherwise; none by default. */
  timeoutMs?: number;
  /**
   * Run each attempt in a worker thread ('thread') or a child process ('process') instead of the
   * consumer's event loop, so that a cancel or a timeout can end it for real: the handler's signal
   * is aborted first, and if it has not returned `CANCEL_GRACE_MS` later, the thread is terminated
   * (the process killed). Only for types loaded through JOB_MODULES (the sandbox loads the module
   * again); `resources` are made per attempt there. See docs/cancel.md for which to choose.
   */
  isolation?: 'thread' | 'process';
  createResources?: () => R;
  disposeResources?: (resources: R) => void | Promise<void>;
};

/** Identity helper so TypeScript infers payload, result and resource types from the parts. */
export function defineJob<P, Result, R = undefined>(
  def: JobDefinition<P, Result, R>,
): JobDefinition<P, Result, R> {
  return def;
}

// Definitions are stored type-erased; each one checks its own payload before its handler sees it.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyJobDefinition = JobDefinition<any, unknown, any>;
