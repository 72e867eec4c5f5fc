import { hostname } from 'node:os';
import type { Queue } from 'bullmq';
import type { JobRegistry } from '../shared/jobs/registry.js';
import type { Logger } from '../shared/logger.js';
import { jobOptions, keepOf, openQueues, type JobData } from '../shared/queue.js';
import { closeRedis, createRedis, redactUrl, waitUntilReady, type RedisClient } from '../shared/redis.js';
import { assertNoEviction } from '../shared/redis-policy.js';
import { deliverCallbacks } from '../shared/run/callbacks.js';
import { markRunSeen, resolveRunId } from '../shared/run/current-run.js';
import { RunError, RunStore } from '../shared/run/run-store.js';
import type { ProducerConfig } from './config.js';
import { createProducer, type Producer } from './producer.js';
import { ProducerLease, type ProducerLeaseState } from './producer-lease.js';

/** Where the producer stands: its lease's state until `done()` or `close()` ends it. */
export type ProducerClientState = ProducerLeaseState | 'done' | 'closed';

export type ProducerClient = Omit<Producer, 'done'> & {
  /** The run this producer put into (what `runId: 'auto'` resolved to). */
  readonly runId: string;
  /**
   * `running`; `cancelled` once its heartbeat heard the run was cancelled; `fenced` once the run
   * stopped accepting this instance (it missed its lease, or another producer registered with its
   * id); `gone` when the run's state vanished from Redis; `done`/`closed` after those calls.
   */
  readonly state: ProducerClientState;
  /**
   * Fires within a heartbeat of the run being cancelled or this producer being fenced; its reason is
   * the RunError that every later `put` rejects with. Hand it to whatever feeds the producer.
   */
  readonly signal: AbortSignal;
  /** Jobs of the run not finished yet (acknowledged, not completed, failed or cancelled): for back-pressure. */
  unfinished(): Promise<number>;
  /**
   * Reports this producer done (the run joins when all are and every job finished), then closes.
   * `stoppedEarly`: it stopped before the jobs it meant to put (status says so).
   */
  done(opts?: { stoppedEarly?: boolean }): ReturnType<Producer['done']>;
  /** Stops the heartbeat and closes the connections without reporting done (the lease then runs out). */
  close(): Promise<void>;
};

export type OpenDeps = {
  registry: JobRegistry;
  log: Logger;
  /** The run whose join callback starts this one (shown as its predecessor in status). */
  afterRun?: string;
  /** Aborted before the producer has registered: give up waiting for Redis (opening then rejects). */
  signal?: AbortSignal;
  /** Told of errors BullMQ's queues report (the command logs them). */
  onQueueError?: (message: string) => void;
  /** Makes the run's store (tests hand in one that misbehaves on cue). */
  runStore?: (redis: RedisClient, queue: string, runId: string, shards: number) => RunStore;
};

const newRunStore = (redis: RedisClient, queue: string, runId: string, shards: number) =>
  new RunStore(redis, queue, runId, shards);

/**
 * What the library's `openProducer` and the producer command share once their settings are parsed:
 * connects, refuses an evicting Redis, resolves `auto`, creates the run if needed, registers this
 * producer and keeps its lease (producer-lease.ts), whose state and signal the handle exposes.
 */
export async function openProducerClient(config: ProducerConfig, deps: OpenDeps): Promise<ProducerClient> {
  const baseLog = deps.log.child({ producerId: config.producerId });
  const redis = createRedis(config, baseLog, `conveyor:producer:${config.producerId}`);
  // Opened once the run is registered: a BullMQ queue on an evicting Redis would warn before we refuse it.
  let queues: Queue<JobData>[] = [];
  let closing: Promise<void> | undefined;
  const close = (lease?: ProducerLease) =>
    (closing ??= (async () => {
      await lease?.stop();
      // BullMQ's close waits for the connection: without one there is nothing of theirs to close.
      if (redis.status === 'ready') await Promise.all(queues.map((q) => q.close()));
      await closeRedis(redis);
    })());

  const giveUp = () => redis.disconnect();
  deps.signal?.addEventListener('abort', giveUp, { once: true });
  let opened;
  try {
    opened = await register(config, redis, deps, baseLog);
  } catch (err) {
    await close();
    throw err;
  } finally {
    deps.signal?.removeEventListener('abort', giveUp);
  }
  const { run, resolved, registered } = opened;
  const log = baseLog.child({ runId: run.runId });
  // A lost connection is said once by the connection itself (waiting for Redis, reachable again).
  queues = openQueues(config.queue, config.shards, redis, (message) => {
    if (redis.status === 'ready') deps.onQueueError?.(message);
  });
  const lease = new ProducerLease({
    run,
    producerId: config.producerId,
    incarnation: registered.incarnation,
    leaseMs: config.leaseMs,
    heartbeatMs: config.heartbeatMs,
    log,
  });
  const producer = createProducer({
    run,
    registry: deps.registry,
    producerId: config.producerId,
    instance: registered.instance,
    idPrefix: registered.idPrefix,
    jobOptions: jobOptions(config.retry),
    batching: { lingerMs: config.putLingerMs },
  });
  const ended = lease.signal;
  let finished: 'done' | 'closed' | undefined;
  /** Refuses a put once the run was cancelled or this instance fenced; learns a fence from a refused put. */
  const guarded = async <T>(put: () => Promise<T>): Promise<T> => {
    if (ended.aborted) throw ended.reason;
    try {
      return await put();
    } catch (err) {
      if (err instanceof RunError && err.code === 'fenced') lease.fenced(err);
      throw err;
    }
  };
  return {
    runId: run.runId,
    get state() {
      return finished ?? lease.state;
    },
    signal: ended,
    put: (type, payload, o) => guarded(() => producer.put(type, payload, o)),
    putMany: (items) => guarded(() => producer.putMany(items)),
    flush: () => producer.flush(),
    get enqueued() {
      return producer.enqueued;
    },
    get produced() {
      return producer.produced;
    },
    unfinished: () => run.unfinished(),
    done: async (o) => {
      try {
        const outcome = await producer.done(o);
        finished = 'done';
        if (outcome.join.joined) await deliverCallbacks(run, queues);
        await markRunSeen(redis, config.queue, resolved);
        return outcome;
      } finally {
        await close(lease);
      }
    },
    close: async () => {
      finished ??= 'closed';
      await close(lease);
    },
  };
}

/** Checks Redis, resolves the run id, creates the run if needed and registers this producer in it. */
async function register(config: ProducerConfig, redis: RedisClient, deps: OpenDeps, log: Logger) {
  log.info(
    { redis: redactUrl(config.redisUrl), queue: config.queue, shards: config.shards },
    'producer starting',
  );
  await waitUntilReady(redis, log, deps.signal);
  await assertNoEviction(redis);
  // runId 'auto': the queue's open run, or the next one (shared/run/current-run.ts).
  const resolved = await resolveRunId(redis, config.queue, config.runId);
  if (resolved.source !== 'explicit')
    log.info(
      { resolvedRunId: resolved.runId, source: resolved.source },
      `RUN_ID=auto: run ${resolved.runId}`,
    );
  const run = (deps.runStore ?? newRunStore)(redis, config.queue, resolved.runId, config.shards);
  await run.create(
    config.expectedProducers,
    config.leaseMs,
    config.retentionMs,
    config.callbacks,
    deps.afterRun ?? '',
    config.collectResults,
    keepOf(config.retry),
  );
  const registered = await run.registerProducer(
    config.producerId,
    { host: hostname(), pid: process.pid },
    config.leaseMs,
  );
  log.info(
    {
      runId: run.runId,
      expectedProducers: config.expectedProducers,
      idPrefix: registered.idPrefix,
      ...(registered.incarnation > 1 ? { incarnation: registered.incarnation } : {}),
    },
    registered.incarnation > 1
      ? 'producer registered again: its earlier incarnation is settled and fenced'
      : 'producer registered',
  );
  return { run, resolved, registered };
}
