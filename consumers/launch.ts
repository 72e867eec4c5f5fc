import { hostname } from 'node:os';
import type { JobRegistry } from '../shared/jobs/registry.js';
import type { Logger } from '../shared/logger.js';
import { closeRedis, createRedis, redactUrl, waitUntilReady } from '../shared/redis.js';
import { assertNoEviction } from '../shared/redis-policy.js';
import { markRunSeen, resolveRunId, type ResolvedRun } from '../shared/run/current-run.js';
import type { ConsumerConfig } from './config.js';
import { startConsumer, type ConsumerHandle, type ConsumerObserver } from './consumer.js';

export type ConsumerClient = ConsumerHandle & {
  /** The run whose join stops it (what `runId: 'auto'` resolved to), or null without one. */
  readonly runId: string | null;
};

export type LaunchDeps = {
  registry: JobRegistry;
  log: Logger;
  observer?: ConsumerObserver;
  /** Aborted before the consumer has started: give up waiting for Redis (start-up then rejects). */
  signal?: AbortSignal;
};

/**
 * What the library's `startConsumer` and the consumer command share once their settings are parsed: connects,
 * refuses an evicting Redis, resolves `auto`, starts the consumer; its `exited` resolves after the
 * run was marked seen and the connection closed.
 */
export async function launchConsumer(config: ConsumerConfig, deps: LaunchDeps): Promise<ConsumerClient> {
  const base = deps.log.child({ consumerId: config.consumerId });
  const log = base.child({ runId: config.runId ?? null });
  const redis = createRedis(config, log, `conveyor:consumer:${config.consumerId}`);
  const giveUp = () => redis.disconnect();
  deps.signal?.addEventListener('abort', giveUp, { once: true });
  const start = async (): Promise<{ handle: ConsumerHandle; run: ResolvedRun | null }> => {
    log.info(
      { redis: redactUrl(config.redisUrl), queue: config.queue, shards: config.shards },
      'consumer starting',
    );
    await waitUntilReady(redis, log, deps.signal);
    await assertNoEviction(redis);
    // runId 'auto': the queue's open run, or the next one (shared/run/current-run.ts).
    const run = config.runId === undefined ? null : await resolveRunId(redis, config.queue, config.runId);
    if (run && run.source !== 'explicit')
      log.info({ resolvedRunId: run.runId, source: run.source }, `RUN_ID=auto: run ${run.runId}`);
    const handle = await startConsumer(run ? { ...config, runId: run.runId } : config, {
      redis,
      registry: deps.registry,
      log: run ? base.child({ runId: run.runId }) : log,
      host: hostname(),
      pid: process.pid,
      observer: deps.observer,
    });
    return { handle, run };
  };
  const { handle, run } = await start()
    .catch((err: unknown) => {
      redis.disconnect();
      throw err;
    })
    .finally(() => deps.signal?.removeEventListener('abort', giveUp));
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
