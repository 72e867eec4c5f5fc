import { setTimeout as sleep } from 'node:timers/promises';
import { duplicateClient, type RedisClient } from '../shared/redis.js';
import type { AnyJobDefinition } from '../shared/jobs/define.js';
import type { JobRegistry } from '../shared/jobs/registry.js';
import type { Logger } from '../shared/logger.js';
import { RunStore } from '../shared/run/run-store.js';
import type { ConsumerRecord, ConsumerState } from '../shared/run/types.js';
import type { ConsumerConfig } from './config.js';
import { FinishRecorder } from './finish-recorder.js';
import { ResultKeeper } from './result-keeper.js';
import { CallbackWaiter } from './callback-waiter.js';
import { CancelListener } from './cancel-listener.js';
import { runCloseSteps } from './close-steps.js';
import { runConsumerHeartbeat } from './consumer-heartbeat.js';
import { JobControl } from './job-control.js';
import { makeProcessor } from './job-processor.js';
import { watchOutcomes } from './job-outcomes.js';
import { makeShardWorkers } from './shard-workers.js';

export { splitConcurrency } from './shard-workers.js';

export type ConsumerExit = {
  /**
   * cancelled: the run joined or someone cancelled it; stopped: a signal; refused: nothing to do;
   * aborted: the run's state vanished from Redis, so it can never join correctly.
   */
  state: 'cancelled' | 'stopped' | 'refused' | 'aborted';
  reason: string;
  jobsDone: number;
  jobsFailed: number;
};

export type ConsumerHandle = {
  readonly id: string;
  /** Resolves when the consumer has finished its held jobs and released everything. */
  readonly exited: Promise<ConsumerExit>;
  /** Stop taking work, finish held jobs, mark cancelled. */
  cancel(reason: string): Promise<ConsumerExit>;
  /** Graceful stop on a signal: like cancel, but held jobs get `graceMs` before being released. */
  stop(reason: string): Promise<ConsumerExit>;
};

/** Optional listener for what a consumer does (metrics hang off this). */
export type ConsumerObserver = {
  /** A job's handler is about to run; `waitMs` is enqueue → start. */
  jobStarted?(job: { id: string; name: string; waitMs: number }): void;
  /** A job reached a terminal state (completed, failed after its last attempt, or cancelled). */
  jobFinished?(job: {
    id: string;
    name: string;
    outcome: 'completed' | 'failed' | 'cancelled';
    durationMs: number;
    /** Failed because its last attempt ran out of time. */
    timedOut?: boolean;
  }): void;
  /** An attempt failed and the job will be retried. */
  jobRetried?(job: { id: string; name: string }): void;
  /** An attempt ran out of time (whether it will be retried or not). */
  jobTimedOut?(job: { id: string; name: string }): void;
  stateChanged?(state: ConsumerState): void;
};

export type ConsumerDeps = {
  redis: RedisClient;
  registry: JobRegistry;
  log: Logger;
  host: string;
  pid: number;
  observer?: ConsumerObserver;
};

/**
 * A consumer: a BullMQ Worker whose finished jobs are reported to their
 * runs, and which cancels itself when its run joins (pub/sub for speed, the heartbeat as a backstop).
 */
export async function startConsumer(config: ConsumerConfig, deps: ConsumerDeps): Promise<ConsumerHandle> {
  const { redis, registry, log } = deps;
  const run = config.runId ? new RunStore(redis, config.queue, config.runId, config.shards) : null;
  await run?.checkShards();
  const record: ConsumerRecord = {
    id: config.consumerId,
    host: deps.host,
    pid: deps.pid,
    concurrency: config.concurrency,
    state: 'starting',
    jobsDone: 0,
    jobsFailed: 0,
    current: [],
    startedAt: Date.now(),
    heartbeatAt: Date.now(),
  };

  if (run && (await run.isJoined())) {
    log.info(`run "${run.runId}" has already joined: nothing to consume, exiting`);
    const exit: ConsumerExit = { state: 'refused', reason: 'run already joined', jobsDone: 0, jobsFailed: 0 };
    return {
      id: record.id,
      exited: Promise.resolve(exit),
      cancel: () => Promise.resolve(exit),
      stop: () => Promise.resolve(exit),
    };
  }

  const active = new Set<string>();
  const control = new JobControl();
  const resources = new Map<AnyJobDefinition, unknown>();
  const resourcesFor = (def: AnyJobDefinition): unknown => {
    if (!def.createResources) return undefined;
    if (!resources.has(def)) resources.set(def, def.createResources());
    return resources.get(def);
  };

  // A run created with collectResults keeps each job's return value (bounded), and how a job that
  // did not complete ended.
  const results = new ResultKeeper((runId) => recorder.store(runId));
  const onRunaway = (jobId: string, still: boolean) => {
    if (still)
      log.warn(
        { jobId, graceMs: config.cancelGraceMs },
        'handler ignored the abort: job recorded as ended, but its handler is still running',
      );
    else log.info({ jobId }, 'a handler that ignored its abort has returned');
    void save().catch(() => undefined);
  };

  const observer = deps.observer ?? {};
  const save = async (state?: ConsumerState) => {
    if (state && state !== record.state) {
      record.state = state;
      observer.stateChanged?.(state);
    }
    record.heartbeatAt = Date.now();
    record.current = [...active];
    if (control.runaway.size > 0 || record.runaway) record.runaway = [...control.runaway];
    if (run) await run.saveConsumer(record);
  };

  const recorder = new FinishRecorder(redis, config.queue, config.shards, config.flushMs, log, (runId) =>
    log.info({ joinedRun: runId }, 'run joined'),
  );

  const processorFor = makeProcessor({
    config,
    registry,
    recorder,
    results,
    control,
    active,
    log,
    observer,
    resourcesFor,
    onRunaway,
  });

  const callbacks = new CallbackWaiter({
    redis,
    queue: config.queue,
    shards: config.shards,
    heartbeatMs: config.heartbeatMs,
    recorder,
    log,
    run,
    saveProgress: () => save(active.size > 0 ? 'busy' : 'idle'),
  });

  const workers = makeShardWorkers({ config, redis, log, processorFor, results });
  workers.forEach((worker, shard) =>
    watchOutcomes(worker, shard, { record, recorder, callbacks, observer, log }),
  );
  const closeWorkers = () => Promise.all(workers.map((w) => w.close()));
  const whenNoJobHeld = async () => {
    while (active.size > 0) await sleep(100);
  };

  let ending: Promise<ConsumerExit> | undefined;
  let resolveExited!: (e: ConsumerExit) => void;
  const exited = new Promise<ConsumerExit>((r) => (resolveExited = r));
  const stopHeartbeat = new AbortController();
  const subscriber = duplicateClient(redis, `conveyor:consumer-sub:${record.id}`);

  const end = (
    mode: 'cancel' | 'stop' | 'abort',
    reason: string,
    graceMs: number | null,
  ): Promise<ConsumerExit> => {
    if (mode !== 'cancel') callbacks.stop();
    ending ??= (async () => {
      if (mode === 'cancel' && reason === 'run joined') await callbacks.untilRunCallbacksFinish();
      log.info(
        { reason },
        mode === 'cancel' ? 'cancelling: finishing held jobs' : 'stopping: finishing held jobs',
      );
      const finalState = mode === 'cancel' ? 'cancelled' : mode === 'stop' ? 'stopped' : 'aborted';
      await runCloseSteps({
        graceMs,
        finalState: finalState === 'cancelled' ? 'cancelled' : 'stopped',
        reason,
        log,
        record,
        save,
        closeWorkers,
        whenNoJobHeld,
        abortHeldJobs: () => {
          log.warn(
            { held: [...active] },
            'grace period over: aborting held jobs so they are retried elsewhere',
          );
          control.stopAll(new Error('consumer stopping'));
        },
        recorder,
        stopHeartbeat: () => stopHeartbeat.abort(),
        queues: () => callbacks.queues,
        subscriber,
        resources,
      });
      const exit: ConsumerExit = {
        state: finalState,
        reason,
        jobsDone: record.jobsDone,
        jobsFailed: record.jobsFailed,
      };
      log.info(exit, mode === 'cancel' ? 'consumer cancelled' : 'consumer stopped');
      resolveExited(exit);
      return exit;
    })();
    return ending;
  };
  const cancel = (reason: string) => end('cancel', reason, null);

  const cancels = new CancelListener(control, log);
  await cancels.listen(subscriber, run, config.queue, (event) => {
    if (event.type === 'joined') void cancel('run joined');
    if (event.type === 'abandoned') void cancel('run abandoned');
    if (event.type === 'cancel' && (event.consumer === record.id || event.consumer === '*'))
      void cancel(event.reason);
  });
  // What was cancelled before this consumer listened.
  if (run) await cancels.catchUp(run);

  await save('idle');
  for (const worker of workers)
    void worker.run().catch((err: unknown) => log.error({ err }, 'worker stopped with an error'));
  log.info(
    { concurrency: config.concurrency, shards: workers.length, runId: config.runId ?? null },
    'consumer ready',
  );

  void runConsumerHeartbeat(
    {
      config,
      run,
      consumerId: record.id,
      recorder,
      cancels,
      callbacks,
      log,
      saveProgress: () => (ending ? Promise.resolve() : save(active.size > 0 ? 'busy' : 'idle')),
      cancel: (why) => void cancel(why),
      abort: (why) => void end('abort', why, config.shutdownGraceMs),
    },
    stopHeartbeat.signal,
  );

  return { id: record.id, exited, cancel, stop: (reason) => end('stop', reason, config.shutdownGraceMs) };
}
