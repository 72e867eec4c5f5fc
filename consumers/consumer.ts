import { setTimeout as sleep } from 'node:timers/promises';
import { MetricsTime, Worker } from 'bullmq';
import { duplicateClient, type RedisClient } from '../shared/redis.js';
import type { AnyJobDefinition } from '../shared/jobs/define.js';
import type { JobRegistry } from '../shared/jobs/registry.js';
import { queueShards } from '../shared/keys.js';
import type { Logger } from '../shared/logger.js';
import type { JobData } from '../shared/queue.js';
import { RunStore } from '../shared/run/run-store.js';
import type { ConsumerRecord, ConsumerState } from '../shared/run/types.js';
import { runSteps, type ShutdownStep } from '../shared/shutdown.js';
import type { ConsumerConfig } from './config.js';
import { FinishRecorder } from './finish-recorder.js';
import { ResultKeeper } from './result-keeper.js';
import { CallbackWaiter } from './callback-waiter.js';
import { CancelListener } from './cancel-listener.js';
import { runConsumerHeartbeat } from './consumer-heartbeat.js';
import { JobControl } from './job-control.js';
import { makeProcessor } from './job-processor.js';
import { watchOutcomes } from './job-outcomes.js';
import { withBoundedErrors } from './bounded-error.js';
import { withEndRecords, type KeepEnd } from './outcome-records.js';
import { traceAttempts } from './attempt-span.js';

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
  const keepEnd = (shard: number, ...[job, outcome, message]: Parameters<KeepEnd>) =>
    results.keepEnd(shard, job, outcome, message);
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

  // One worker per shard, sharing the process's concurrency (at least one slot each).
  const shards = queueShards(config.queue, config.shards);
  const slots = splitConcurrency(config.concurrency, shards.length);
  const workers = shards.map(
    (shard, i) =>
      new Worker<JobData>(
        shard.name,
        withEndRecords(
          withBoundedErrors(traceAttempts(config.queue, processorFor(i))),
          keepEnd.bind(null, i),
          (job, err) =>
            log.warn({ jobId: job.id, err }, "could not keep the job's failure in its run's results"),
        ),
        {
          connection: redis,
          prefix: shard.prefix,
          concurrency: slots[i]!,
          lockDuration: config.lockMs,
          stalledInterval: config.stalledIntervalMs,
          maxStalledCount: config.maxStalled,
          // Per-minute completed/failed counts for Bull Board's chart (two weeks, a few hundred KB in Redis);
          // off by default because BullMQ then does extra Redis work on every finished job.
          ...(config.queueMetrics ? { metrics: { maxDataPoints: MetricsTime.TWO_WEEKS } } : {}),
          autorun: false,
        },
      ),
  );
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
      await runSteps(
        closeSteps({
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
        }),
        log,
        REDIS_STEP_MS,
      );
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
    { concurrency: config.concurrency, shards: shards.length, runId: config.runId ?? null },
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

/** How long a close step that only talks to Redis may take before the close moves on without it. */
const REDIS_STEP_MS = 2_000;
/** How long job types' disposeResources may take, together, before the consumer leaves without them. */
const DISPOSE_STEP_MS = 5_000;

type CloseContext = {
  /** Held jobs' grace on a stop; null on a cancel, which waits for them as long as they take. */
  graceMs: number | null;
  finalState: 'cancelled' | 'stopped';
  reason: string;
  log: Logger;
  record: ConsumerRecord;
  save: (state?: ConsumerState) => Promise<unknown>;
  closeWorkers: () => Promise<unknown>;
  whenNoJobHeld: () => Promise<unknown>;
  abortHeldJobs: () => void;
  recorder: FinishRecorder;
  stopHeartbeat: () => void;
  queues: () => readonly { close(): Promise<void> }[];
  subscriber: RedisClient;
  resources: Map<AnyJobDefinition, unknown>;
};

/**
 * A consumer's close, as an ordered list of steps: stop taking work, finish or release held jobs,
 * record finishes and the final state, then release everything. Each step is bounded and isolated
 * (runSteps), so a Redis that does not answer costs each of its steps their bound, and disposing
 * resources still happens. Finishes a timed-out flush could not record are what a crashed consumer
 * leaves too: the run's reconcile pass counts them.
 */
function closeSteps(c: CloseContext): ShutdownStep[] {
  let closing: Promise<unknown> = Promise.resolve();
  return [
    { name: 'record cancelling', run: () => c.save('cancelling') },
    {
      name: 'close workers',
      // Bounded inside: a stop by the grace period, then by CLOSE_WHEN_IDLE_MS; a cancel waits for
      // held jobs as long as they take (asyncio's cancel after join has none), by design.
      timeoutMs: null,
      run: async () => {
        closing = c.closeWorkers();
        if (c.graceMs === null) await Promise.race([closing, c.whenNoJobHeld()]);
        else if (!(await settlesWithin(closing, c.graceMs))) {
          c.abortHeldJobs();
          await Promise.race([closing, c.whenNoJobHeld()]);
        }
        // With no job held, a worker whose blocking connection is stuck reconnecting (a Redis Cluster
        // failing over) must not keep the consumer from leaving: nothing of the run is lost. BullMQ
        // memoises close(), so a forced close cannot unstick it.
        if (!(await settlesWithin(closing, CLOSE_WHEN_IDLE_MS)))
          c.log.warn(
            { waitedMs: CLOSE_WHEN_IDLE_MS },
            'a worker did not close with no job held (its connection is reconnecting): leaving without it',
          );
      },
    },
    { name: 'record finishes', run: () => c.recorder.flush() },
    { name: 'stop heartbeat', run: c.stopHeartbeat },
    {
      name: 'record final state',
      run: () => {
        c.record.cancelledAt = Date.now();
        c.record.cancelReason = c.reason;
        return c.save(c.finalState);
      },
    },
    { name: 'dispose finish recorder', run: () => c.recorder.dispose() },
    { name: 'close queues', run: () => Promise.all(c.queues().map((q) => q.close())) },
    { name: 'disconnect subscriber', run: () => c.subscriber.disconnect() },
    {
      name: 'dispose job resources',
      timeoutMs: DISPOSE_STEP_MS,
      run: async () => {
        for (const [def, r] of c.resources) await def.disposeResources?.(r);
      },
    },
  ];
}

/** Once a cancelled consumer holds no job, how long its workers get to close before it leaves without them. */
const CLOSE_WHEN_IDLE_MS = 10_000;

/** `total` slots over `parts` workers, as evenly as possible, at least one each. */
export function splitConcurrency(total: number, parts: number): number[] {
  return Array.from({ length: parts }, (_, i) =>
    Math.max(1, Math.floor(total / parts) + (i < total % parts ? 1 : 0)),
  );
}

/** True if `p` settles within `ms`; the timer is cleared either way so it never holds the process open. */
async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  const timer = new AbortController();
  try {
    return await Promise.race([p.then(() => true), sleep(ms, false, { signal: timer.signal })]);
  } finally {
    timer.abort();
  }
}
