import { setTimeout as sleep } from 'node:timers/promises';
import type { Queue } from 'bullmq';
import { ConfigError, drawCount } from '../shared/config.js';
import type { JobRegistry } from '../shared/jobs/registry.js';
import type { Logger } from '../shared/logger.js';
import { jobOptions, keepOf, type JobData } from '../shared/queue.js';
import { deliverCallbacks } from '../shared/run/callbacks.js';
import { RunError, type RunStore } from '../shared/run/run-store.js';
import type { ProducerConfig } from './config.js';
import { jobBatches } from './job-lines.js';
import { createProducer, type PutItem } from './producer.js';

export type ProducerOutcome = {
  produced: number;
  planned: number;
  stoppedEarly: boolean;
  lost: boolean;
  /** The run was cancelled: the producer stopped putting and reported done with what it had put. */
  cancelled: boolean;
};

export type RunProducerDeps = {
  /** One BullMQ queue per shard, in shard order. */
  queues: readonly Queue<JobData>[];
  run: RunStore;
  registry: JobRegistry;
  log: Logger;
  host: string;
  pid: number;
  random?: () => number;
  observer?: ProducerObserver;
  /** JOBS_FILE's bytes (a file, or standard input), when the jobs come from there. */
  jobsInput?: AsyncIterable<Buffer | string>;
};

/** Optional listener for what a producer does (metrics hang off this). */
export type ProducerObserver = {
  /** `count` more jobs were enqueued and acknowledged in the run. */
  jobsProduced?(count: number): void;
};

/**
 * The seed's `produce(q)`: registers in the run, enqueues a random number of jobs with a pause before
 * each, waits while the run has `maxDepth` unfinished jobs, then reports done (which may join the run).
 * `signal` stops production early; the producer still reports done with what it had enqueued. So
 * does a cancel of the run (seen on the heartbeat): the outcome then says `cancelled`.
 */
export async function runProducer(
  config: ProducerConfig,
  deps: RunProducerDeps,
  signal: AbortSignal,
): Promise<ProducerOutcome> {
  const { run, log } = deps;
  // A file's jobs are counted as they are read (planned: how many were read).
  let planned = config.jobsFile !== null ? 0 : drawCount(config.jobs, deps.random);
  await run.create(
    config.expectedProducers,
    config.leaseMs,
    config.retentionMs,
    config.callbacks,
    '',
    config.collectResults,
    keepOf(config.retry),
  );
  const registered = await run
    .registerProducer(config.producerId, { host: deps.host, pid: deps.pid }, config.leaseMs)
    .catch((err: unknown) => {
      if (err instanceof RunError && err.code === 'cancelled') return null;
      throw err;
    });
  if (!registered) {
    log.info({ state: 'cancelled' }, 'the run was cancelled before this producer registered: nothing to put');
    return { produced: 0, planned, stoppedEarly: true, lost: false, cancelled: true };
  }
  const { incarnation, instance, idPrefix } = registered;
  log.info(
    {
      planned,
      expectedProducers: config.expectedProducers,
      idPrefix,
      ...(incarnation > 1 ? { incarnation } : {}),
    },
    incarnation > 1
      ? 'producer registered again: its earlier incarnation is settled and fenced'
      : 'producer registered',
  );

  let lost = false;
  const markLost = (why: string) => {
    if (lost) return;
    lost = true;
    log.error(why);
  };
  // A cancel of the run stops production like a signal does, but the outcome says so.
  const cancelled = new AbortController();
  const stopping = AbortSignal.any([signal, cancelled.signal]);
  // The heartbeat runs until done() has been answered: a slow final flush must not cost the lease.
  const stopHeartbeat = new AbortController();
  const heartbeat = (async () => {
    while (!stopHeartbeat.signal.aborted) {
      await sleep(config.heartbeatMs, undefined, { signal: stopHeartbeat.signal }).catch(() => undefined);
      if (stopHeartbeat.signal.aborted) break;
      const state = await run
        .heartbeatProducer(config.producerId, config.leaseMs, incarnation)
        .catch((err: unknown) => {
          log.warn({ err: String(err) }, 'heartbeat failed');
          return 'running' as const;
        });
      if (state === 'cancelled' && !cancelled.signal.aborted) {
        log.info('the run was cancelled: stopping production');
        cancelled.abort();
      }
      if (state === 'running' || state === 'done' || state === 'cancelled') continue;
      markLost(
        state === 'missing'
          ? "the run's state is gone from Redis (restarted without persistence, or flushed): stopping"
          : state === 'superseded'
            ? 'another producer registered with this PRODUCER_ID: stopping'
            : 'this producer missed its lease and the run marked it lost: stopping',
      );
      return;
    }
  })();

  const producer = createProducer({
    run,
    registry: deps.registry,
    producerId: config.producerId,
    instance,
    idPrefix,
    jobOptions: jobOptions(config.retry),
    batching: { lingerMs: config.putLingerMs },
  });
  const batches =
    config.jobsFile !== null && deps.jobsInput
      ? jobBatches(
          deps.jobsInput,
          sourceName(config.jobsFile),
          deps.registry,
          config.batchSize,
          config.producerId,
        )
      : countedBatches(config, planned);
  let sent = 0;
  let exhausted = false;
  try {
    while (!stopping.aborted && !lost) {
      if (config.intervalMs > 0)
        await sleep(config.intervalMs, undefined, { signal: stopping }).catch(() => undefined);
      if (stopping.aborted || lost) break;
      if (config.maxDepth > 0) await waitForRoom(run, config.maxDepth, stopping);
      if (stopping.aborted) break;
      // The next batch is read only now: a slow run holds a file's reading back (backpressure). A
      // signal ends a wait for input that may never come (standard input from a terminal).
      const next = await nextUnlessAborted(batches, stopping);
      if (next === null) break;
      if (next.done) {
        exhausted = true;
        break;
      }
      const before = producer.enqueued;
      await producer.putMany(next.value);
      deps.observer?.jobsProduced?.(producer.enqueued - before);
      sent += next.value.length;
      if (config.jobsFile !== null) planned = sent;
      log.debug({ sent, planned }, 'put');
    }
    const isCancelled = () => cancelled.signal.aborted;
    if (lost) return { produced: producer.produced, planned, stoppedEarly: true, lost, cancelled: false };
    const { state, join } = await producer.done({ stoppedEarly: !exhausted });
    if (state !== 'done') {
      markLost(`the run marked this producer ${state} before it reported done: its count stands as settled`);
      return { produced: producer.produced, planned, stoppedEarly: true, lost, cancelled: false };
    }
    const stoppedEarly = !exhausted;
    log.info(
      { produced: producer.produced, planned, stoppedEarly, state: isCancelled() ? 'cancelled' : 'done' },
      isCancelled() ? 'producer done: the run was cancelled' : 'producer done',
    );
    if (join.joinedNow) log.info({ runId: run.runId }, 'run joined');
    if (join.joined) await deliverCallbacks(run, deps.queues);
    return { produced: producer.produced, planned, stoppedEarly, lost, cancelled: isCancelled() };
  } catch (err) {
    if (err instanceof RunError && err.code === 'fenced') {
      markLost(err.message);
      return { produced: producer.produced, planned, stoppedEarly: true, lost, cancelled: false };
    }
    throw err;
  } finally {
    stopHeartbeat.abort();
    await heartbeat;
  }
}

/** asyncio.Queue(maxsize) semantics across processes: wait while the run has too many unfinished jobs. */
async function waitForRoom(run: RunStore, maxDepth: number, signal: AbortSignal): Promise<void> {
  while (!signal.aborted && (await run.unfinished()) >= maxDepth) {
    await sleep(20, undefined, { signal }).catch(() => undefined);
  }
}

/**
 * Refuses, before anything is written to Redis, a job type the registry does not know or settings
 * whose payload its schema rejects, naming the variable to fix.
 */
export function checkProducible(config: ProducerConfig, registry: JobRegistry): void {
  checkCallbacks(config, registry);
  // A jobs file's lines are checked one by one as they are read.
  if (config.jobsFile !== null) return;
  if (!registry.get(config.jobType))
    throw new ConfigError([
      `JOB_TYPE: unknown job type "${config.jobType}" (known: ${registry.names().join(', ')})`,
    ]);
  const variable =
    config.jobType === 'sleep' ? 'JOB_MS' : config.jobType === 'fetch' ? 'FETCH_URLS' : 'JOB_PAYLOAD';
  const v = registry.validate(config.jobType, makePayloadFactory(config)(0));
  if (!v.ok) throw new ConfigError([`${variable}: not a valid "${config.jobType}" payload: ${v.reason}`]);
}

function checkCallbacks(config: ProducerConfig, registry: JobRegistry): void {
  for (const cb of config.callbacks)
    if (!registry.get(cb.type))
      throw new ConfigError([
        `${cb.name === 'on-join' ? 'ON_JOIN_TYPE' : 'ON_SUCCESS_TYPE'}: unknown job type "${cb.type}" (known: ${registry.names().join(', ')})`,
      ]);
}

/**
 * The iterator's next value, or null once the signal aborts first. Its listener goes with each call:
 * a race against one promise that stays pending would keep every value it was raced with.
 */
function nextUnlessAborted<T>(
  it: AsyncIterator<T> | Iterator<T>,
  signal: AbortSignal,
): Promise<IteratorResult<T> | null> {
  if (signal.aborted) return Promise.resolve(null);
  return new Promise((resolve, reject) => {
    const onAbort = () => resolve(null);
    signal.addEventListener('abort', onAbort, { once: true });
    Promise.resolve(it.next())
      .then(resolve, reject)
      .finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/** JOBS of JOB_TYPE in batches of BATCH_SIZE (the seed's producer). */
function* countedBatches(config: ProducerConfig, planned: number): Generator<PutItem[]> {
  const payloadFor = makePayloadFactory(config);
  for (let sent = 0; sent < planned; sent += config.batchSize) {
    const n = Math.min(config.batchSize, planned - sent);
    yield Array.from({ length: n }, (_, i) => ({ type: config.jobType, payload: payloadFor(sent + i) }));
  }
}

/** How a jobs file is named in errors. */
export function sourceName(jobsFile: string): string {
  return jobsFile === '-' ? 'standard input' : jobsFile;
}

function makePayloadFactory(config: ProducerConfig): (i: number) => unknown {
  switch (config.jobType) {
    case 'sleep':
      return (i) => ({ value: i, ms: config.jobMs });
    case 'fetch':
      return (i) => ({ url: config.fetchUrls[i % config.fetchUrls.length] });
    default:
      return () => config.jobPayload ?? {};
  }
}
