import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type { AnyJobDefinition } from '../shared/jobs/define.js';
import { builtinJobs, JobRegistry } from '../shared/jobs/index.js';
import { loadProducerConfig } from '../producers/config.js';
import { createProducer, type Producer } from '../producers/producer.js';
import { jobOptions, keepOf, openQueues } from '../shared/queue.js';
import { closeRedis, createRedis } from '../shared/redis.js';
import { deliverCallbacks } from '../shared/run/callbacks.js';
import { RunStore } from '../shared/run/run-store.js';
import { loggerFor, toEnv, type ConnectionOptions } from './options.js';

export type ProducerOptions = ConnectionOptions & {
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
   * Keep how each job ended (its return value as JSON, or its error), for `openRun(...).results()`
   * (one entry per put, in put order, once the run has joined) and `stream()`. Bounded: `maxJobBytes` per job (default 64 KiB), `maxRunBytes` per run and shard (default
   * 64 MiB); a value past a bound fails its job with an error saying so.
   */
  collectResults?: boolean | { maxJobBytes?: number; maxRunBytes?: number };
};

export type ProducerClient = Omit<Producer, 'done'> & {
  readonly runId: string;
  /** Reports this producer done (the run joins when all are and every job finished), then closes. */
  done(): ReturnType<Producer['done']>;
  /** Stops the heartbeat and closes the connections without reporting done (the lease then runs out). */
  close(): Promise<void>;
};

/**
 * The seed's `q.put()` side: creates the run if needed, registers this producer in it and keeps its
 * lease alive until `done()`. Payloads are validated against their job type before anything is sent.
 */
export async function openProducer(opts: ProducerOptions): Promise<ProducerClient> {
  const config = loadProducerConfig(
    toEnv(opts, {
      RUN_ID: opts.runId,
      PRODUCERS: opts.producers ?? 1,
      PRODUCER_ID: opts.producerId,
      ATTEMPTS: opts.attempts,
      BACKOFF_MS: opts.backoffMs,
      ON_JOIN_TYPE: opts.onJoin?.type,
      ON_JOIN_PAYLOAD: opts.onJoin?.payload === undefined ? undefined : JSON.stringify(opts.onJoin.payload),
      ON_SUCCESS_TYPE: opts.onSuccess?.type,
      COLLECT_RESULTS: opts.collectResults ? true : undefined,
      RESULT_MAX_BYTES: typeof opts.collectResults === 'object' ? opts.collectResults.maxJobBytes : undefined,
      RUN_RESULTS_MAX_BYTES:
        typeof opts.collectResults === 'object' ? opts.collectResults.maxRunBytes : undefined,
      ON_SUCCESS_PAYLOAD:
        opts.onSuccess?.payload === undefined ? undefined : JSON.stringify(opts.onSuccess.payload),
    }),
  );
  const log = loggerFor(opts, 'producer').child({ runId: config.runId, producerId: config.producerId });
  const registry = new JobRegistry([...builtinJobs, ...(opts.jobs ?? [])]);
  for (const cb of config.callbacks)
    if (!registry.get(cb.type))
      throw new TypeError(
        `${cb.name === 'on-join' ? 'onJoin' : 'onSuccess'}.type: unknown job type "${cb.type}" (known: ${registry.names().join(', ')})`,
      );
  const redis = createRedis(config, log, `conveyor:producer:${config.producerId}`);
  const queues = openQueues(config.queue, config.shards, redis);
  const run = new RunStore(redis, config.queue, config.runId, config.shards);
  const stopHeartbeat = new AbortController();
  let heartbeat: Promise<void> = Promise.resolve();
  const close = async () => {
    stopHeartbeat.abort();
    await heartbeat;
    await Promise.all(queues.map((q) => q.close()));
    await closeRedis(redis);
  };
  let registered;
  try {
    await run.create(
      config.expectedProducers,
      config.leaseMs,
      config.retentionMs,
      config.callbacks,
      opts.afterRun ?? '',
      config.collectResults,
      keepOf(config.retry),
    );
    registered = await run.registerProducer(
      config.producerId,
      { host: hostname(), pid: process.pid },
      config.leaseMs,
    );
  } catch (err) {
    await close();
    throw err;
  }
  const { incarnation, instance, idPrefix } = registered;
  heartbeat = (async () => {
    while (!stopHeartbeat.signal.aborted) {
      await sleep(config.heartbeatMs, undefined, { signal: stopHeartbeat.signal }).catch(() => undefined);
      if (stopHeartbeat.signal.aborted) break;
      await run
        .heartbeatProducer(config.producerId, config.leaseMs, incarnation)
        .catch((err: unknown) => log.warn({ err: String(err) }, 'heartbeat failed'));
    }
  })();
  const producer = createProducer({
    run,
    registry,
    producerId: config.producerId,
    instance,
    idPrefix,
    jobOptions: jobOptions(config.retry),
  });
  return {
    runId: config.runId,
    put: (type, payload, o) => producer.put(type, payload, o),
    putMany: (items) => producer.putMany(items),
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
        if (outcome.join.joined) await deliverCallbacks(run, queues);
        return outcome;
      } finally {
        await close();
      }
    },
    close,
  };
}
