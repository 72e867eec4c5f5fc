import { hostname } from 'node:os';
import { loadConsumerConfig } from '../consumers/config.js';
import { startConsumer as startConsumerCore, type ConsumerHandle } from '../consumers/consumer.js';
import type { AnyJobDefinition } from '../shared/jobs/define.js';
import { builtinJobs, JobRegistry } from '../shared/jobs/index.js';
import { closeRedis, createRedis, waitUntilReady } from '../shared/redis.js';
import { assertNoEviction } from '../shared/redis-policy.js';
import { markRunSeen, resolveRunId, type ResolvedRun } from '../shared/run/current-run.js';
import { loggerFor, toEnv, type ConnectionOptions } from './options.js';

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
  const config = loadConsumerConfig(
    toEnv(opts, { RUN_ID: opts.runId, CONSUMER_ID: opts.consumerId, CONCURRENCY: opts.concurrency }),
  );
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
