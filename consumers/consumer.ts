import { setTimeout as sleep } from 'node:timers/promises';
import type { Worker } from 'bullmq';
import { duplicateClient, type RedisClient } from '../shared/redis.js';
import type { AnyJobDefinition } from '../shared/jobs/define.js';
import type { JobRegistry } from '../shared/jobs/registry.js';
import type { Logger } from '../shared/logger.js';
import type { JobData } from '../shared/queue.js';
import { RunStore, type RunEvent } from '../shared/run/run-store.js';
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
 * A consumer: a BullMQ Worker per shard whose finished jobs are reported to their runs, and which
 * cancels itself when its run joins (pub/sub for speed, the heartbeat as a backstop).
 */
export async function startConsumer(config: ConsumerConfig, deps: ConsumerDeps): Promise<ConsumerHandle> {
  const run = config.runId ? new RunStore(deps.redis, config.queue, config.runId, config.shards) : null;
  await run?.checkShards();
  if (run && (await run.isJoined())) return refused(config.consumerId, run.runId, deps.log);
  const consumer = new Consumer(config, deps, run);
  await consumer.start();
  return consumer.handle;
}

/** The handle of a consumer that never started: its run has already joined. */
function refused(id: string, runId: string, log: Logger): ConsumerHandle {
  log.info(`run "${runId}" has already joined: nothing to consume, exiting`);
  const exit: ConsumerExit = { state: 'refused', reason: 'run already joined', jobsDone: 0, jobsFailed: 0 };
  return {
    id,
    exited: Promise.resolve(exit),
    cancel: () => Promise.resolve(exit),
    stop: () => Promise.resolve(exit),
  };
}

type EndMode = 'cancel' | 'stop' | 'abort';

/**
 * One consumer and its named parts: its shards' workers, the record its run shows, the finish
 * recorder and result keeper its jobs report to, the cancel listener, the callback waiter and the
 * heartbeat. It ends once (`cancel`, `stop`, or an abort from its heartbeat), through its close steps.
 */
export class Consumer {
  /** What its run shows of this consumer: state, counts, held jobs. */
  readonly record: ConsumerRecord;
  /** Resolves when the consumer has finished its held jobs and released everything. */
  readonly exited: Promise<ConsumerExit>;
  /** What startConsumer hands out: the consumer's id, exit, cancel and stop. */
  readonly handle: ConsumerHandle;
  private readonly config: ConsumerConfig;
  private readonly log: Logger;
  private readonly observer: ConsumerObserver;
  /** The consumer's run; null for a worker without RUN_ID, which serves every run on its queue. */
  private readonly run: RunStore | null;
  /** Ids of the jobs held now. */
  private readonly active = new Set<string>();
  private readonly control = new JobControl();
  /** Each job type's resources, made for its first job, disposed of by the close. */
  private readonly resources = new Map<AnyJobDefinition, unknown>();
  private readonly recorder: FinishRecorder;
  private readonly results: ResultKeeper;
  private readonly callbacks: CallbackWaiter;
  private readonly cancels: CancelListener;
  private readonly workers: Worker<JobData>[];
  private readonly subscriber: RedisClient;
  private readonly heartbeat = new AbortController();
  private ending: Promise<ConsumerExit> | undefined;
  private resolveExited!: (exit: ConsumerExit) => void;

  constructor(config: ConsumerConfig, deps: ConsumerDeps, run: RunStore | null) {
    const { redis, log } = deps;
    this.config = config;
    this.log = log;
    this.observer = deps.observer ?? {};
    this.run = run;
    this.record = newRecord(config, deps);
    // A run created with collectResults keeps each job's return value (bounded), and how a job that
    // did not complete ended.
    this.results = new ResultKeeper((runId) => this.recorder.store(runId));
    this.recorder = new FinishRecorder(redis, config.queue, config.shards, config.flushMs, log, (runId) =>
      log.info({ joinedRun: runId }, 'run joined'),
    );
    this.callbacks = new CallbackWaiter({
      redis,
      queue: config.queue,
      shards: config.shards,
      heartbeatMs: config.heartbeatMs,
      recorder: this.recorder,
      log,
      run,
      saveProgress: () => this.save(this.busyOrIdle()),
    });
    this.workers = this.makeWorkers(deps);
    this.exited = new Promise<ConsumerExit>((r) => (this.resolveExited = r));
    this.subscriber = duplicateClient(redis, `conveyor:consumer-sub:${this.record.id}`);
    this.cancels = new CancelListener(this.control, log);
    this.handle = {
      id: this.record.id,
      exited: this.exited,
      cancel: (reason) => this.cancel(reason),
      stop: (reason) => this.stop(reason),
    };
  }

  /** Listens for cancels, applies those it missed, records itself idle, runs its workers, starts its heartbeat. */
  async start(): Promise<void> {
    const { config, log, run } = this;
    await this.cancels.listen(this.subscriber, run, config.queue, (event) => this.onRunEvent(event));
    // What was cancelled before this consumer listened.
    if (run) await this.cancels.catchUp(run);

    await this.save('idle');
    for (const worker of this.workers)
      void worker.run().catch((err: unknown) => log.error({ err }, 'worker stopped with an error'));
    log.info(
      { concurrency: config.concurrency, shards: this.workers.length, runId: config.runId ?? null },
      'consumer ready',
    );

    void runConsumerHeartbeat(
      {
        config,
        run,
        consumerId: this.record.id,
        recorder: this.recorder,
        cancels: this.cancels,
        callbacks: this.callbacks,
        log,
        saveProgress: () => (this.ending ? Promise.resolve() : this.save(this.busyOrIdle())),
        cancel: (why) => void this.cancel(why),
        abort: (why) => void this.end('abort', why, config.shutdownGraceMs),
      },
      this.heartbeat.signal,
    );
  }

  /** Stop taking work, finish held jobs (as long as they take), mark cancelled. */
  cancel(reason: string): Promise<ConsumerExit> {
    return this.end('cancel', reason, null);
  }

  /** Graceful stop on a signal: like cancel, but held jobs get SHUTDOWN_GRACE_MS before being released. */
  stop(reason: string): Promise<ConsumerExit> {
    return this.end('stop', reason, this.config.shutdownGraceMs);
  }

  /** The first call closes the consumer; later ones get the same exit (a stop or abort still stops waiting for callbacks). */
  private end(mode: EndMode, reason: string, graceMs: number | null): Promise<ConsumerExit> {
    if (mode !== 'cancel') this.callbacks.stop();
    this.ending ??= this.close(mode, reason, graceMs);
    return this.ending;
  }

  /** The close itself: waits for the run's callbacks after a join, then walks the close steps. */
  private async close(mode: EndMode, reason: string, graceMs: number | null): Promise<ConsumerExit> {
    const { log, record } = this;
    if (mode === 'cancel' && reason === 'run joined') await this.callbacks.untilRunCallbacksFinish();
    log.info(
      { reason },
      mode === 'cancel' ? 'cancelling: finishing held jobs' : 'stopping: finishing held jobs',
    );
    const finalState = mode === 'cancel' ? 'cancelled' : mode === 'stop' ? 'stopped' : 'aborted';
    await runCloseSteps({
      graceMs,
      // A record has no 'aborted' state: an aborted consumer shows as stopped, its exit says aborted.
      finalState: finalState === 'cancelled' ? 'cancelled' : 'stopped',
      reason,
      log,
      record,
      save: (state) => this.save(state),
      closeWorkers: () => Promise.all(this.workers.map((w) => w.close())),
      whenNoJobHeld: () => this.whenNoJobHeld(),
      abortHeldJobs: () => this.abortHeldJobs(),
      recorder: this.recorder,
      stopHeartbeat: () => this.heartbeat.abort(),
      queues: () => this.callbacks.queues,
      subscriber: this.subscriber,
      resources: this.resources,
    });
    const exit: ConsumerExit = {
      state: finalState,
      reason,
      jobsDone: record.jobsDone,
      jobsFailed: record.jobsFailed,
    };
    log.info(exit, mode === 'cancel' ? 'consumer cancelled' : 'consumer stopped');
    this.resolveExited(exit);
    return exit;
  }

  /** Refreshes the consumer's record in its run (and its state, when given). */
  private async save(state?: ConsumerState): Promise<void> {
    const { record } = this;
    if (state && state !== record.state) {
      record.state = state;
      this.observer.stateChanged?.(state);
    }
    record.heartbeatAt = Date.now();
    record.current = [...this.active];
    if (this.control.runaway.size > 0 || record.runaway) record.runaway = [...this.control.runaway];
    if (this.run) await this.run.saveConsumer(record);
  }

  private busyOrIdle(): ConsumerState {
    return this.active.size > 0 ? 'busy' : 'idle';
  }

  /** The run's join, abandonment, or a cancel addressed to this consumer (or to all): leave. */
  private onRunEvent(event: RunEvent): void {
    if (event.type === 'joined') void this.cancel('run joined');
    if (event.type === 'abandoned') void this.cancel('run abandoned');
    if (event.type === 'cancel' && (event.consumer === this.record.id || event.consumer === '*'))
      void this.cancel(event.reason);
  }

  /** The shards' workers, each reporting what became of its jobs to the record, run and observer. */
  private makeWorkers(deps: ConsumerDeps): Worker<JobData>[] {
    const { config, log, observer, record, recorder, results, callbacks } = this;
    const processorFor = makeProcessor({
      config,
      registry: deps.registry,
      recorder,
      results,
      control: this.control,
      active: this.active,
      log,
      observer,
      resourcesFor: (def) => this.resourcesFor(def),
      onRunaway: (jobId, still) => this.onRunaway(jobId, still),
    });
    const workers = makeShardWorkers({ config, redis: deps.redis, log, processorFor, results });
    workers.forEach((worker, shard) =>
      watchOutcomes(worker, shard, { record, recorder, callbacks, observer, log }),
    );
    return workers;
  }

  /** A job type's resources, made at its first job. */
  private resourcesFor(def: AnyJobDefinition): unknown {
    if (!def.createResources) return undefined;
    if (!this.resources.has(def)) this.resources.set(def, def.createResources());
    return this.resources.get(def);
  }

  /** A handler ignored its abort (`still`), or has since returned: logged, and shown in the record. */
  private onRunaway(jobId: string, still: boolean): void {
    if (still)
      this.log.warn(
        { jobId, graceMs: this.config.cancelGraceMs },
        'handler ignored the abort: job recorded as ended, but its handler is still running',
      );
    else this.log.info({ jobId }, 'a handler that ignored its abort has returned');
    void this.save().catch(() => undefined);
  }

  private async whenNoJobHeld(): Promise<void> {
    while (this.active.size > 0) await sleep(100);
  }

  private abortHeldJobs(): void {
    this.log.warn(
      { held: [...this.active] },
      'grace period over: aborting held jobs so they are retried elsewhere',
    );
    this.control.stopAll(new Error('consumer stopping'));
  }
}

function newRecord(config: ConsumerConfig, deps: ConsumerDeps): ConsumerRecord {
  return {
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
}
