import { hostname } from 'node:os';
import { loadConsumerConfig } from '../consumers/config.js';
import { startConsumer as startConsumerCore, type ConsumerHandle } from '../consumers/consumer.js';
import type { AnyJobDefinition } from '../shared/jobs/define.js';
import { builtinJobs, JobRegistry } from '../shared/jobs/index.js';
import { closeRedis, createRedis, waitUntilReady } from '../shared/redis.js';
import { assertNoEviction } from '../shared/redis-policy.js';
import { markRunSeen, resolveRunId, type ResolvedRun } from '../shared/run/current-run.js';
import { loggerFor, parseOptions, type ConnectionOptions } from './options.js';

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

export type ConsumerClient = ConsumerHandle & {
  /** The run whose join stops it (what `runId: 'auto'` resolved to), or null without one. */
  readonly runId: string | null;
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
  const log = loggerFor(opts, 'consumer').child({
    runId: config.runId ?? null,
    consumerId: config.consumerId,
  });
  const registry = new JobRegistry([...builtinJobs, ...(opts.jobs ?? [])]);
  const redis = createRedis(config, log, `conveyor:consumer:${config.consumerId}`);
  const start = async (): Promise<{ handle: ConsumerHandle; run: ResolvedRun | null }> => {
    await waitUntilReady(redis, log);
    await assertNoEviction(redis);
    // runId 'auto': the queue's open run, or the next one (shared/run/current-run.ts).
    const run = config.runId === undefined ? null : await resolveRunId(redis, config.queue, config.runId);
    const handle = await startConsumerCore(run ? { ...config, runId: run.runId } : config, {
      redis,
      registry,
      log: run ? log.child({ runId: run.runId }) : log,
      host: hostname(),
      pid: process.pid,
    });
    return { handle, run };
  };
  const { handle, run } = await start().catch((err: unknown) => {
    redis.disconnect();
    throw err;
  });
  const exited = handle.exited.then(async (exit) => {
    if (run) await markRunSeen(redis, config.queue, run).catch(() => undefined);
    await closeRedis(redis);
    return exit;
  });
  return {
    id: handle.id,
    runId: run?.runId ?? null,
    exited,
    cancel: async (reason) => (await handle.cancel(reason), exited),
    stop: async (reason) => (await handle.stop(reason), exited),
  };
}
