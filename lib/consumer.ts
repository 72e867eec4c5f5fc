import { loadConsumerConfig } from '../consumers/config.js';
import { launchConsumer, type ConsumerClient } from '../consumers/launch.js';
import type { AnyJobDefinition } from '../shared/jobs/define.js';
import { builtinJobs, JobRegistry } from '../shared/jobs/index.js';
import { loggerFor, parseOptions, type ConnectionOptions } from './options.js';

export type { ConsumerClient };

export type ConsumerOptions = ConnectionOptions & {
  /**
   * The run whose join stops this consumer. Until then it takes every job on the queue, whatever its
   * run (one queue, many runs); without a run it works until `stop()`. `auto`: the queue's open run,
   * or a new one once the last has joined.
   */
  runId?: string;
  /** Default `<host>-<pid>`. */
  consumerId?: string;
  /** Jobs at once (default 1). */
  concurrency?: number;
  /** Your job types (the built-in `sleep` and `fetch` are always there). */
  jobs?: readonly AnyJobDefinition[];
  /** BullMQ's job lock (ms, default 30000), stall check interval (default 30000) and stalls allowed (default 1). */
  lockMs?: number;
  stalledIntervalMs?: number;
  maxStalled?: number;
  /** How long finished jobs are gathered before one write records them in the run (ms, default 10). */
  flushMs?: number;
  /** A handler that ignores a cancel or timeout is recorded ended this long after the abort (ms, default 5000). */
  cancelGraceMs?: number;
  /** Time limit per attempt of the built-in job types (ms, default 0: none). */
  jobTimeoutMs?: number;
  /** Give up on a run waiting this long for producers that never register (s; default its retention; 0 = never). */
  abandonAfterS?: number;
};

/**
 * Starts a consumer: runs jobs until its run joins (or `cancel`/`stop`), then closes its connection.
 * `exited` resolves once everything is released. Refuses a Redis that may evict keys
 * (EvictionPolicyError); `runId: 'auto'` means the queue's open run, or the next one, as for the
 * commands.
 */
export async function startConsumer(opts: ConsumerOptions): Promise<ConsumerClient> {
  const config = parseOptions(loadConsumerConfig, opts, {
    RUN_ID: ['runId', opts.runId],
    CONSUMER_ID: ['consumerId', opts.consumerId],
    CONCURRENCY: ['concurrency', opts.concurrency],
    LOCK_MS: ['lockMs', opts.lockMs],
    STALLED_INTERVAL_MS: ['stalledIntervalMs', opts.stalledIntervalMs],
    MAX_STALLED: ['maxStalled', opts.maxStalled],
    FLUSH_MS: ['flushMs', opts.flushMs],
    CANCEL_GRACE_MS: ['cancelGraceMs', opts.cancelGraceMs],
    JOB_TIMEOUT_MS: ['jobTimeoutMs', opts.jobTimeoutMs],
    RUN_ABANDON_S: ['abandonAfterS', opts.abandonAfterS],
  });
  return launchConsumer(config, {
    registry: new JobRegistry([...builtinJobs, ...(opts.jobs ?? [])]),
    log: loggerFor(opts, 'consumer'),
  });
}
