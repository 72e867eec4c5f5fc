import { hostname } from 'node:os';
import type { AnyJobDefinition } from '../shared/jobs/define.js';
import { builtinJobs, JobRegistry } from '../shared/jobs/index.js';
import { loadProducerConfig, type ProducerConfig } from '../producers/config.js';
import { createProducer, type Producer } from '../producers/producer.js';
import { ProducerLease, type ProducerLeaseState } from '../producers/producer-lease.js';
import type { Queue } from 'bullmq';
import { jobOptions, keepOf, openQueues, type JobData } from '../shared/queue.js';
import { closeRedis, createRedis, type RedisClient } from '../shared/redis.js';
import { assertNoEviction } from '../shared/redis-policy.js';
import { deliverCallbacks } from '../shared/run/callbacks.js';
import { markRunSeen, resolveRunId } from '../shared/run/current-run.js';
import { RunError, RunStore } from '../shared/run/run-store.js';
import { loggerFor, parseOptions, type ConnectionOptions } from './options.js';

export type ProducerOptions = ConnectionOptions & {
  /** The run to put into; `auto`: the queue's open run, or a new one once the last has joined. */
  runId: string;
  /** How many producers the run expects (it joins only once that many reported done); default 1. */
  producers?: number;
  /** Default `<host>-<pid>`. */
  producerId?: string;
  /** Your job types (the built-in `sleep` and `fetch` are always there). */
  jobs?: readonly AnyJobDefinition[];
  /** Tries per job (default 3) and the first retry's delay (default 1000 ms, doubling). */
  attempts?: number;
  backoffMs?: number;
  /** Finished jobs BullMQ keeps per shard (defaults 1000 completed, 10000 failed). */
  keepCompleted?: number;
  keepFailed?: number;
  /** How long a joined run's keys stay in Redis (s, default 7 days; 0 = for ever). */
  retentionS?: number;
  /** How long a lone put waits for concurrent ones to share its script call (ms, default 0). */
  putLingerMs?: number;
  /**
   * A job enqueued exactly once when the run joins (`onSuccess`: only when no job failed or was
   * removed). Its payload is `callbackPayload(...)`: the run id, final totals, failed job ids and
   * `payload`. Set by whichever producer creates the run; a callback may open the next run.
   */
  onJoin?: { type: string; payload?: unknown };
  onSuccess?: { type: string; payload?: unknown };
  /** The run whose join callback starts this one (shown as its predecessor in status). */
  afterRun?: string;
  /**
   * Keep each job's return value (JSON), for `openRun(...).results()` in put order once the run has
   * joined. Bounded: `maxJobBytes` per job (default 64 KiB), `maxRunBytes` per run and shard (default
   * 64 MiB); a value past a bound fails its job with an error saying so.
   */
  collectResults?: boolean | { maxJobBytes?: number; maxRunBytes?: number };
};

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
  /** Reports this producer done (the run joins when all are and every job finished), then closes. */
  done(): ReturnType<Producer['done']>;
  /** Stops the heartbeat and closes the connections without reporting done (the lease then runs out). */
  close(): Promise<void>;
};

/**
 * Opens a producer: creates the run if needed, registers this producer in it and keeps its lease
 * alive until `done()`. Payloads are validated against their job type before anything is sent.
 * Refuses a Redis that may evict keys (EvictionPolicyError); `runId: 'auto'` means the queue's open
 * run, or the next one, as for the commands.
 */
export async function openProducer(opts: ProducerOptions): Promise<ProducerClient> {
  const results = typeof opts.collectResults === 'object' ? opts.collectResults : {};
  const json = (v: unknown) => (v === undefined ? undefined : JSON.stringify(v));
  const config = parseOptions(loadProducerConfig, opts, {
    RUN_ID: ['runId', opts.runId],
    PRODUCERS: ['producers', opts.producers ?? 1],
    PRODUCER_ID: ['producerId', opts.producerId],
    ATTEMPTS: ['attempts', opts.attempts],
    BACKOFF_MS: ['backoffMs', opts.backoffMs],
    KEEP_COMPLETED: ['keepCompleted', opts.keepCompleted],
    KEEP_FAILED: ['keepFailed', opts.keepFailed],
    RUN_RETENTION_S: ['retentionS', opts.retentionS],
    PUT_LINGER_MS: ['putLingerMs', opts.putLingerMs],
    ON_JOIN_TYPE: ['onJoin.type', opts.onJoin?.type],
    ON_JOIN_PAYLOAD: ['onJoin.payload', json(opts.onJoin?.payload)],
    ON_SUCCESS_TYPE: ['onSuccess.type', opts.onSuccess?.type],
    ON_SUCCESS_PAYLOAD: ['onSuccess.payload', json(opts.onSuccess?.payload)],
    COLLECT_RESULTS: ['collectResults', opts.collectResults ? true : undefined],
    RESULT_MAX_BYTES: ['collectResults.maxJobBytes', results.maxJobBytes],
    RUN_RESULTS_MAX_BYTES: ['collectResults.maxRunBytes', results.maxRunBytes],
  });
  const registry = new JobRegistry([...builtinJobs, ...(opts.jobs ?? [])]);
  for (const cb of config.callbacks)
    if (!registry.get(cb.type))
      throw new TypeError(
        `${cb.name === 'on-join' ? 'onJoin' : 'onSuccess'}.type: unknown job type "${cb.type}" (known: ${registry.names().join(', ')})`,
      );
  const baseLog = loggerFor(opts, 'producer').child({ producerId: config.producerId });
  const redis = createRedis(config, baseLog, `conveyor:producer:${config.producerId}`);
  // Opened once the run is registered: a BullMQ queue on an evicting Redis would warn before we refuse it.
  let queues: Queue<JobData>[] = [];
  let closing: Promise<void> | undefined;
  const close = (lease?: ProducerLease) =>
    (closing ??= (async () => {
      await lease?.stop();
      await Promise.all(queues.map((q) => q.close()));
      await closeRedis(redis);
    })());

  let opened;
  try {
    opened = await register(config, redis, opts.afterRun ?? '');
  } catch (err) {
    await close();
    throw err;
  }
  const { run, resolved, registered } = opened;
  const log = baseLog.child({ runId: run.runId });
  queues = openQueues(config.queue, config.shards, redis);
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
    registry,
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
    done: async () => {
      try {
        const outcome = await producer.done();
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
async function register(config: ProducerConfig, redis: RedisClient, afterRun: string) {
  await assertNoEviction(redis);
  // runId 'auto': the queue's open run, or the next one (shared/run/current-run.ts).
  const resolved = await resolveRunId(redis, config.queue, config.runId);
  const run = new RunStore(redis, config.queue, resolved.runId, config.shards);
  await run.create(
    config.expectedProducers,
    config.leaseMs,
    config.retentionMs,
    config.callbacks,
    afterRun,
    config.collectResults,
    keepOf(config.retry),
  );
  const registered = await run.registerProducer(
    config.producerId,
    { host: hostname(), pid: process.pid },
    config.leaseMs,
  );
  return { run, resolved, registered };
}
